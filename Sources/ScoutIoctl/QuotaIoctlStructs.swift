/// `scoutfs_ioctl_quota_rule` (48 bytes): what ADD_QUOTA_RULE and DEL_QUOTA_RULE take and
/// GET_QUOTA_RULES returns. The same fields as the persistent `scoutfs_quota_rule_val`.
///
/// A rule maps an operation (`op`: inode creation or data block allocation) to the `.totl.`
/// total named by its three `nameVal`s and a `limit`. Each name value can be the literal
/// value or be taken from the inode (`nameSource`: project, uid, gid), and an inode attribute
/// name can *select* (`nameFlags`: only inodes whose attribute equals the value match).
/// Rules are unique by every field but the padding; their sort order (``<``) decides which
/// of several matching rules applies: the greatest.
public struct QuotaRule: IoctlStruct, Hashable, Comparable {
    public static let size = 48

    /// `SQ_OP_INODE`, `SQ_OP_DATA`.
    public static let opInode: UInt8 = 0
    public static let opData: UInt8 = 1
    public static let opCount: UInt8 = 2
    /// `SQ_NS_LITERAL`, `_PROJ`, `_UID`, `_GID`.
    public static let sourceLiteral: UInt8 = 0
    public static let sourceProj: UInt8 = 1
    public static let sourceUID: UInt8 = 2
    public static let sourceGID: UInt8 = 3
    public static let sourceCount: UInt8 = 4
    /// `SQ_NF_SELECT`.
    public static let nameFlagSelect: UInt8 = 1
    /// `SQ_RF_TOTL_COUNT`: the limit is compared with the total's count of xattrs, not its sum.
    public static let ruleFlagCount: UInt8 = 1

    public var nameVal: [UInt64] = [0, 0, 0]
    public var limit: UInt64 = 0
    public var prio: UInt8 = 0
    public var op: UInt8 = 0
    public var ruleFlags: UInt8 = 0
    public var nameSource: [UInt8] = [0, 0, 0]
    public var nameFlags: [UInt8] = [0, 0, 0]

    public init(
        prio: UInt8 = 0, nameVal: [UInt64] = [0, 0, 0], nameSource: [UInt8] = [0, 0, 0], nameFlags: [UInt8] = [0, 0, 0],
        op: UInt8 = 0, limit: UInt64 = 0, ruleFlags: UInt8 = 0
    ) {
        self.prio = prio
        self.nameVal = nameVal
        self.nameSource = nameSource
        self.nameFlags = nameFlags
        self.op = op
        self.limit = limit
        self.ruleFlags = ruleFlags
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        nameVal = [try r.u64(), try r.u64(), try r.u64()]
        limit = try r.u64()
        prio = try r.u8()
        op = try r.u8()
        ruleFlags = try r.u8()
        nameSource = try r.take(3)
        nameFlags = try r.take(3)
        try r.skip(7)
    }

    public func encode(_ w: inout IoctlWriter) {
        for v in nameVal { w.u64(v) }
        w.u64(limit)
        w.u8(prio)
        w.u8(op)
        w.u8(ruleFlags)
        w.raw(nameSource)
        w.raw(nameFlags)
        w.pad(7)
    }

    /// Whether name `i` takes its value from an inode attribute (project, uid or gid).
    public static func isAttribute(_ source: UInt8) -> Bool {
        source == sourceProj || source == sourceUID || source == sourceGID
    }

    /// Whether name `i` selects: the rule only matches inodes whose attribute equals it.
    public func selects(_ i: Int) -> Bool { nameFlags[i] & Self.nameFlagSelect != 0 }

    /// Why the rule is malformed (the kernel's `valid_rule`, EINVAL from the ioctls), or nil.
    /// Stricter than the original in two places where it reads out of bounds: an op past
    /// `SQ_OP_DATA` and a name source past `SQ_NS_GID` are refused too.
    public var invalidReason: String? {
        if op >= Self.opCount { return "unknown op \(op)" }
        if ruleFlags & ~Self.ruleFlagCount != 0 { return "unknown rule flags 0x\(String(ruleFlags, radix: 16))" }
        for i in 0..<3 {
            if nameSource[i] >= Self.sourceCount { return "unknown source \(nameSource[i]) in name \(i + 1)" }
            if nameFlags[i] & ~Self.nameFlagSelect != 0 { return "unknown flags 0x\(String(nameFlags[i], radix: 16)) in name \(i + 1)" }
            guard selects(i) else { continue }
            if !Self.isAttribute(nameSource[i]) { return "name \(i + 1) selects a literal value" }
            for j in 0..<3 where j != i && selects(j) && nameSource[j] == nameSource[i] && nameVal[j] != nameVal[i] {
                return "names \(i + 1) and \(j + 1) select different values of one attribute"
            }
        }
        return nil
    }

    /// The original's rule order: priority, then each name's value, source and flags, then
    /// op, limit and rule flags.
    public static func < (a: QuotaRule, b: QuotaRule) -> Bool {
        if a.prio != b.prio { return a.prio < b.prio }
        for i in 0..<3 {
            if a.nameVal[i] != b.nameVal[i] { return a.nameVal[i] < b.nameVal[i] }
            if a.nameSource[i] != b.nameSource[i] { return a.nameSource[i] < b.nameSource[i] }
            if a.nameFlags[i] != b.nameFlags[i] { return a.nameFlags[i] < b.nameFlags[i] }
        }
        if a.op != b.op { return a.op < b.op }
        if a.limit != b.limit { return a.limit < b.limit }
        return a.ruleFlags < b.ruleFlags
    }
}

/// `scoutfs_ioctl_get_quota_rules` (GET_QUOTA_RULES, declared `_IOR`): the storage-order
/// cursor (rule hash, collision number), updated past the last rule returned, and an array
/// of `QuotaRule`s to fill.
public struct GetQuotaRulesArgs: IoctlStruct, Equatable {
    public static let size = 32
    public var iterator: [UInt64] = [0, 0]
    public var rulesPtr: UInt64 = 0
    public var rulesNr: UInt64 = 0

    public init(iterator: [UInt64] = [0, 0], rulesPtr: UInt64 = 0, rulesNr: UInt64 = 0) {
        self.iterator = iterator
        self.rulesPtr = rulesPtr
        self.rulesNr = rulesNr
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        iterator = [try r.u64(), try r.u64()]
        rulesPtr = try r.u64()
        rulesNr = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(iterator[0])
        w.u64(iterator[1])
        w.u64(rulesPtr)
        w.u64(rulesNr)
    }
}
