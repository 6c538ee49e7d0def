/// What a quota check asks about: the operation and the inode attributes it is done with
/// (the original's `squota_input`). For an inode creation they are the new inode's (the
/// directory's project, the caller's uid, the directory's gid when it is setgid, else the
/// caller's); for a data allocation the file's.
public struct QuotaInput: Hashable, Sendable {
    public var proj: UInt64
    public var uid: UInt64
    public var gid: UInt64
    public var op: UInt8

    public init(op: UInt8, proj: UInt64, uid: UInt64, gid: UInt64) {
        self.op = op
        self.proj = proj
        self.uid = uid
        self.gid = gid
    }

    /// The value of an attribute source (project, uid, gid).
    func attribute(_ source: UInt8) -> UInt64 {
        switch source {
        case QuotaRule.sourceProj: proj
        case QuotaRule.sourceUID: uid
        default: gid
        }
    }
}

/// Every quota rule of a volume, arranged for checks (the original's `squota_ruleset`). Pure.
///
/// The rule that applies to an input is the greatest (in ``QuotaRule``'s order) of the
/// operation's rules that select nothing and of those whose every selecting name equals the
/// input's attribute. Rules that select are found by attribute value, so a check looks only
/// at the rules the input could match.
public struct QuotaRuleset: Sendable {
    /// Per op, the greatest rule that selects nothing.
    private var defaults: [QuotaRule?] = Array(repeating: nil, count: Int(QuotaRule.opCount))
    /// Per attribute (project, uid, gid): value → indexes of the rules selecting that value.
    private var selecting: [[UInt64: [Int]]] = [[:], [:], [:]]
    private var rules: [QuotaRule] = []

    public init(_ all: [QuotaRule]) {
        for r in all where r.invalidReason == nil {
            var selects = false
            for i in 0..<3 where r.selects(i) {
                if !selects { rules.append(r) }
                selects = true
                selecting[Int(r.nameSource[i]) - 1][r.nameVal[i], default: []].append(rules.count - 1)
            }
            if !selects, defaults[Int(r.op)].map({ $0 < r }) ?? true { defaults[Int(r.op)] = r }
        }
    }

    /// No rules at all: every check passes without looking further.
    public var isEmpty: Bool { rules.isEmpty && defaults.allSatisfy { $0 == nil } }

    /// The rule that applies to `input`, or nil.
    public func match(_ input: QuotaInput) -> QuotaRule? {
        guard input.op < QuotaRule.opCount else { return nil }
        var best = defaults[Int(input.op)]
        for a in 0..<3 {
            for i in selecting[a][input.attribute(UInt8(a + 1))] ?? [] {
                let r = rules[i]
                guard r.op == input.op, (0..<3).allSatisfy({ !r.selects($0) || input.attribute(r.nameSource[$0]) == r.nameVal[$0] }) else {
                    continue
                }
                if best.map({ $0 < r }) ?? true { best = r }
            }
        }
        return best
    }

    /// The `.totl.` name whose total `rule` limits for `input`: each name is the literal
    /// value, or the input's attribute for an attribute source.
    public static func totlName(_ rule: QuotaRule, _ input: QuotaInput) -> [UInt64] {
        (0..<3).map { QuotaRule.isAttribute(rule.nameSource[$0]) ? input.attribute(rule.nameSource[$0]) : rule.nameVal[$0] }
    }

    /// Whether a total (`total`, `count`) refuses the operation under `rule`: the value it
    /// limits (the count with the C flag, else the sum) has reached the limit.
    public static func exceeds(_ rule: QuotaRule, total: UInt64, count: UInt64) -> Bool {
        (rule.ruleFlags & QuotaRule.ruleFlagCount != 0 ? count : total) >= rule.limit
    }
}
