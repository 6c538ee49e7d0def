import ScoutFormat
public import ScoutIoctl

/// The mount's quota state (the original's `squota_info`), touched only under the volume's
/// state lock: the ruleset read from the rule items, and the results of recent checks.
struct QuotaCache {
    /// nil: the rules must be read (at mount, after a change, after the quota lock was lost).
    var ruleset: QuotaRuleset?
    /// Check results (0 or EDQUOT) by input, each good until its expiry (monotonic seconds).
    var checks: [QuotaInput: (expires: Double, result: Int32)] = [:]

    /// How long a check result is used: the original's 5 s.
    static let checkAge = 5.0
    /// Past this many cached results the expired ones go, and all of them if none had.
    static let maxChecks = 65536

    mutating func invalidate() {
        ruleset = nil
        checks.removeAll()
    }

    mutating func remember(_ input: QuotaInput, _ result: Int32, now: Double) {
        if checks.count >= Self.maxChecks {
            checks = checks.filter { $0.value.expires > now }
            if checks.count >= Self.maxChecks { checks.removeAll() }
        }
        checks[input] = (now + Self.checkAge, result)
    }
}

/// Quotas (format v2, the original's quota.c). Userspace owns the policy: rules are items of
/// the quota zone, read and changed under its cluster lock, and each maps an operation
/// (inode creation, data allocation) to a `.totl.` total and a limit. The daemon only
/// enforces: an operation whose rule's total has reached the limit fails with EDQUOT.
///
/// Design note. The rules are read into a ``QuotaRuleset`` once and kept until a rule changes
/// (this mount's change, or the quota lock's invalidation by another mount's). The totals are
/// read from the committed forest without a cluster lock, and each check's result is kept for
/// 5 s (`drop_quota_check_cache` drops them), so enforcement is approximate across mounts, as
/// in the original. A check runs inside an operation, under its inode locks and the state
/// lock, before the operation changes anything; when the rules are not in memory it throws
/// ``NeedQuotaRules`` and `withLocks` reads them with no lock held, then runs the operation
/// again.
extension Volume {
    /// Thrown by a check that finds no ruleset in memory (see `withLocks`).
    struct NeedQuotaRules: Error {}

    var quotaSupported: Bool { fmtVers >= Format.versionQuota }

    static func quotaRuleKey(hash: UInt64, coll: UInt64) -> Key {
        Key(zone: KeyZone.quota, type: KeyType.quotaRule, second: hash, third: coll)
    }

    static func ruleValue(_ r: QuotaRule) -> QuotaRuleValue {
        QuotaRuleValue(nameVal: r.nameVal, limit: r.limit, prio: r.prio, op: r.op, ruleFlags: r.ruleFlags, nameSource: r.nameSource, nameFlags: r.nameFlags)
    }

    /// The rule of an item; EIO for a value of the wrong size or a malformed rule.
    static func rule(_ key: Key, _ value: [UInt8]) throws(FSError) -> QuotaRule {
        guard value.count == QuotaRuleValue.encodedSize, let v = try? QuotaRuleValue.decode(value) else {
            throw FSError(FSError.EIO, "quota rule item \(key): \(value.count)-byte value")
        }
        let r = QuotaRule(prio: v.prio, nameVal: v.nameVal, nameSource: v.nameSource, nameFlags: v.nameFlags, op: v.op, limit: v.limit, ruleFlags: v.ruleFlags)
        if let why = r.invalidReason { throw FSError(FSError.EIO, "quota rule item \(key): \(why)") }
        return r
    }

    /// Runs `body` holding the quota zone lock (READ, or WRITE with a transaction open) and
    /// the state lock.
    private func withQuotaLock<R>(write: Bool, _ body: () throws -> R) throws(FSError) -> R {
        let mode: LockMode = write ? .write : .read
        try locks.acquire(.quota, mode)
        defer { locks.release(.quota, mode) }
        do {
            return try underLocks([.quota], write: write, orphan: false, body)
        } catch let e as FSError {
            throw e
        } catch {
            throw FSError(FSError.EIO, "\(error)")
        }
    }

    /// Every rule item from the storage-order position (`hash`, `coll`) on, at most `limit`
    /// of them, with the position past the last. Call under the quota lock.
    private func ruleItems(from hash: UInt64, _ coll: UInt64, through last: Key, limit: Int) throws(FSError) -> [(key: Key, rule: QuotaRule)] {
        var out: [(key: Key, rule: QuotaRule)] = []
        var pos = Self.quotaRuleKey(hash: hash, coll: coll)
        while out.count < limit, pos <= last, let it = try cache.next(from: pos, through: last) {
            out.append((it.key, try Self.rule(it.key, it.value)))
            if it.key == last { break }
            pos = Self.nextCollision(it.key)
        }
        return out
    }

    /// The position after `key`: the next collision number, carrying into the hash (the
    /// original's `inc_coll_nr`).
    static func nextCollision(_ key: Key) -> Key {
        let coll = key.third &+ 1
        return quotaRuleKey(hash: coll == 0 ? key.second &+ 1 : key.second, coll: coll)
    }

    // MARK: checks

    /// Reads every rule into the ruleset (the original's `read_ruleset`). No lock may be held.
    func loadQuotaRules() throws(FSError) {
        try withQuotaLock(write: false) { () throws in
            if quota.ruleset != nil { return }
            let items = try ruleItems(from: 0, 0, through: Self.quotaRuleKey(hash: .max, coll: .max), limit: .max)
            quota.ruleset = QuotaRuleset(items.map(\.rule))
        }
    }

    /// Refuses (EDQUOT) an operation `op` by an inode with these attributes when its rule's
    /// total has reached the limit (the original's `check_inputs`). Call under the state lock
    /// before changing anything; throws ``NeedQuotaRules`` when the rules must be read first.
    func checkQuota(_ input: QuotaInput) throws {
        guard quotaSupported else { return }
        guard let rs = quota.ruleset else { throw NeedQuotaRules() }
        if rs.isEmpty { return }
        let now = monotonicSeconds()
        if let c = quota.checks[input], c.expires > now {
            if c.result != 0 { throw FSError(c.result, "quota exceeded") }
            return
        }
        var result: Int32 = 0
        if let rule = rs.match(input) {
            let n = QuotaRuleset.totlName(rule, input)
            let key = XattrTagKeys.totlKey(n[0], n[1], n[2])
            if let it = try forest.scanCommitted(from: key, through: key, limit: 1).first {
                guard let t = try? XattrTotlValue.decode(it.value) else { throw FSError(FSError.EIO, "totl item \(key): \(it.value.count)-byte value") }
                if QuotaRuleset.exceeds(rule, total: t.total, count: t.count) { result = FSError.EDQUOT }
            }
        }
        quota.remember(input, result, now: now)
        if result != 0 { throw FSError(result, "quota exceeded") }
    }

    /// The check before creating an inode in `dir` for `caller` whose new inode gets `gid`.
    func checkInodeQuota(dir: Inode, uid: UInt32, gid: UInt32) throws {
        try checkQuota(QuotaInput(op: QuotaRule.opInode, proj: dir.proj, uid: UInt64(uid), gid: UInt64(gid)))
    }

    /// The check before a write or allocation in the file `i`.
    func checkDataQuota(_ i: Inode) throws {
        try checkQuota(QuotaInput(op: QuotaRule.opData, proj: i.proj, uid: UInt64(i.uid), gid: UInt64(i.gid)))
    }

    /// Forgets every cached check result (the original's debugfs `drop_quota_check_cache`).
    public func dropQuotaCheckCache() {
        state.withLock { quota.checks.removeAll() }
    }

    // MARK: the ioctls

    /// Up to `limit` rules in storage order from the cursor on, and the cursor past the last
    /// (GET_QUOTA_RULES). EOPNOTSUPP before format version 2.
    public func quotaRules(from cursor: (hash: UInt64, coll: UInt64), limit: Int) throws(FSError) -> (rules: [QuotaRule], next: (hash: UInt64, coll: UInt64)) {
        guard quotaSupported else { throw FSError(FSError.EOPNOTSUPP, "quotas need format version \(Format.versionQuota)") }
        let items = try withQuotaLock(write: false) { () throws -> [(key: Key, rule: QuotaRule)] in
            try ruleItems(from: cursor.hash, cursor.coll, through: Self.quotaRuleKey(hash: .max, coll: .max), limit: limit)
        }
        guard let last = items.last else { return ([], cursor) }
        let next = Self.nextCollision(last.key)
        return (items.map(\.rule), (next.second, next.third))
    }

    /// Adds `rule` (EEXIST when it exists) or deletes it (ENOENT when no rule has every
    /// field equal) under the quota zone's WRITE lock, which takes every other mount's rules
    /// away (ADD_QUOTA_RULE, DEL_QUOTA_RULE). EINVAL for a malformed rule, EOPNOTSUPP before
    /// format version 2.
    public func modifyQuotaRule(_ rule: QuotaRule, add: Bool) throws(FSError) {
        guard quotaSupported else { throw FSError(FSError.EOPNOTSUPP, "quotas need format version \(Format.versionQuota)") }
        if let why = rule.invalidReason { throw FSError(FSError.EINVAL, "quota rule: \(why)") }
        let value = Self.ruleValue(rule).encoded()
        let hash = FNV1a.hash64(value)
        try withQuotaLock(write: true) { () throws in
            // the rules with this hash, in collision order: the rule itself, or the key after the last
            var key = Self.quotaRuleKey(hash: hash, coll: 0)
            var found = false
            for it in try ruleItems(from: hash, 0, through: Self.quotaRuleKey(hash: hash, coll: .max), limit: .max) {
                if it.rule == rule {
                    key = it.key
                    found = true
                    break
                }
                key = Self.nextCollision(it.key)
            }
            switch (add, found) {
            case (true, true): throw FSError(FSError.EEXIST, "the quota rule exists")
            case (false, false): throw FSError(FSError.ENOENT, "no such quota rule")
            case (true, false): cache.put(key, value)
            case (false, true): cache.delete(key)
            }
            quota.invalidate()
        }
    }
}
