import ScoutIoctl
import Testing

/// The quota rule struct (its bytes, validity and order) and the ruleset's matching, as the
/// original's ioctl.h and quota.c define them.
@Suite("Quota rules and their matching")
struct QuotaRuleTests {
    static func rule(
        _ prio: UInt8, _ names: [(UInt64, UInt8, UInt8)], op: UInt8 = QuotaRule.opInode, limit: UInt64 = 1, flags: UInt8 = 0
    ) -> QuotaRule {
        QuotaRule(prio: prio, nameVal: names.map(\.0), nameSource: names.map(\.1), nameFlags: names.map(\.2), op: op, limit: limit, ruleFlags: flags)
    }

    static let L = QuotaRule.sourceLiteral
    static let P = QuotaRule.sourceProj
    static let U = QuotaRule.sourceUID
    static let G = QuotaRule.sourceGID
    static let S = QuotaRule.nameFlagSelect

    @Test func layoutIsTheHeaders() throws {
        let r = Self.rule(7, [(0x0102, Self.P, Self.S), (0x0304, Self.U, 0), (0x0506, Self.L, 0)], op: QuotaRule.opData, limit: 0x0a0b, flags: 1)
        let b = r.encoded
        #expect(b.count == 48)
        #expect(b[0] == 0x02 && b[1] == 0x01 && b[8] == 0x04 && b[16] == 0x06)
        #expect(b[24] == 0x0b && b[25] == 0x0a)
        // prio, op, rule_flags, name_source[3], name_flags[3], then 7 bytes of padding
        #expect(Array(b[32...40]) == [7, 1, 1, 1, 2, 0, 1, 0, 0])
        #expect(b[41...].allSatisfy { $0 == 0 })
        #expect(try QuotaRule(bytes: b) == r)
        var padded = b
        padded[44] = 0xff
        #expect(try QuotaRule(bytes: padded) == r, "padding is not part of a rule")

        let g = GetQuotaRulesArgs(iterator: [1, 2], rulesPtr: 3, rulesNr: 4)
        #expect(g.encoded.count == 32 && g.encoded[8] == 2 && g.encoded[24] == 4)
        #expect(try GetQuotaRulesArgs(bytes: g.encoded) == g)
        #expect(IoctlCommand.getQuotaRules.size == 32 && IoctlCommand.addQuotaRule.size == 48)
    }

    @Test func validityIsTheKernels() {
        #expect(Self.rule(1, [(1, Self.L, 0), (1, Self.L, 0), (1, Self.L, 0)]).invalidReason == nil)
        #expect(Self.rule(1, [(1, Self.U, Self.S), (2, Self.G, Self.S), (3, Self.P, Self.S)]).invalidReason == nil)
        // the same attribute selected twice with one value is fine, with two it is not
        #expect(Self.rule(1, [(5, Self.U, Self.S), (5, Self.U, Self.S), (0, Self.L, 0)]).invalidReason == nil)
        #expect(Self.rule(1, [(5, Self.U, Self.S), (6, Self.U, Self.S), (0, Self.L, 0)]).invalidReason != nil)
        // an unselected name of the same attribute does not count
        #expect(Self.rule(1, [(5, Self.U, Self.S), (6, Self.U, 0), (0, Self.L, 0)]).invalidReason == nil)
        #expect(Self.rule(1, [(5, Self.L, Self.S), (0, Self.L, 0), (0, Self.L, 0)]).invalidReason != nil, "a literal cannot select")
        #expect(Self.rule(1, [(5, Self.L, 2), (0, Self.L, 0), (0, Self.L, 0)]).invalidReason != nil, "unknown name flag")
        #expect(Self.rule(1, [(5, 4, 0), (0, Self.L, 0), (0, Self.L, 0)]).invalidReason != nil, "unknown source")
        #expect(Self.rule(1, [(0, Self.L, 0), (0, Self.L, 0), (0, Self.L, 0)], flags: 2).invalidReason != nil, "unknown rule flag")
        #expect(Self.rule(1, [(0, Self.L, 0), (0, Self.L, 0), (0, Self.L, 0)], op: 2).invalidReason != nil, "unknown op")
    }

    @Test func orderIsPrioThenNamesThenOpLimitFlags() {
        let base = Self.rule(1, [(5, Self.L, 0), (5, Self.L, 0), (5, Self.L, 0)], limit: 10)
        var higher: [QuotaRule] = []
        var r = base
        r.prio = 2
        higher.append(r)
        r = base
        r.nameVal[0] = 6
        higher.append(r)
        r = base
        r.nameSource[0] = Self.U
        higher.append(r)
        r = base
        r.nameSource[2] = Self.P
        r.nameFlags[2] = Self.S
        higher.append(r)
        r = base
        r.op = QuotaRule.opData
        higher.append(r)
        r = base
        r.limit = 11
        higher.append(r)
        r = base
        r.ruleFlags = 1
        higher.append(r)
        for h in higher { #expect(base < h && !(h < base), "\(h)") }
        // an earlier field outweighs every later one
        var lowPrio = base
        lowPrio.nameVal = [.max, .max, .max]
        lowPrio.limit = .max
        var highPrio = base
        highPrio.prio = 2
        #expect(lowPrio < highPrio)
    }

    @Test func matchingPicksTheGreatestApplicableRule() {
        let uid: UInt64 = 22222, gid: UInt64 = 44444
        let dflt = Self.rule(1, [(1, Self.L, 0), (1, Self.L, 0), (1, Self.L, 0)], limit: 100)
        let byUID = Self.rule(1, [(uid, Self.U, Self.S), (1, Self.L, 0), (1, Self.L, 0)], limit: 5)
        let byBoth = Self.rule(1, [(uid, Self.U, Self.S), (gid, Self.G, Self.S), (1, Self.L, 0)], limit: 3)
        let dataRule = Self.rule(9, [(uid, Self.U, Self.S), (1, Self.L, 0), (1, Self.L, 0)], op: QuotaRule.opData, limit: 7)
        let rs = QuotaRuleset([dflt, byUID, byBoth, dataRule])
        #expect(!rs.isEmpty && QuotaRuleset([]).isEmpty)
        #expect(rs.match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: 1, gid: 1)) == dflt)
        #expect(rs.match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: uid, gid: 1)) == byUID)
        // both select and both match: the rule with the greater second name wins
        #expect(rs.match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: uid, gid: gid)) == byBoth)
        // only part of a multi-attribute selection matches: not that rule
        #expect(rs.match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: 1, gid: gid)) == dflt)
        // the op decides
        #expect(rs.match(QuotaInput(op: QuotaRule.opData, proj: 0, uid: uid, gid: gid)) == dataRule)
        #expect(rs.match(QuotaInput(op: QuotaRule.opData, proj: 0, uid: 1, gid: gid)) == nil)
        // a higher priority default beats a selecting rule
        let bigDefault = Self.rule(3, [(0, Self.L, 0), (0, Self.L, 0), (0, Self.L, 0)])
        #expect(QuotaRuleset([byUID, bigDefault]).match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: uid, gid: 0)) == bigDefault)
        // of two defaults for an op the greater one applies
        let lowDefault = Self.rule(0, [(9, Self.L, 0), (9, Self.L, 0), (9, Self.L, 0)])
        #expect(QuotaRuleset([bigDefault, lowDefault]).match(QuotaInput(op: QuotaRule.opInode, proj: 0, uid: 0, gid: 0)) == bigDefault)
    }

    @Test func totlNamesAndLimits() {
        let r = Self.rule(1, [(7, Self.P, 0), (0, Self.U, 0), (3, Self.L, 0)], limit: 10)
        let input = QuotaInput(op: QuotaRule.opInode, proj: 70, uid: 1000, gid: 2000)
        #expect(QuotaRuleset.totlName(r, input) == [70, 1000, 3])
        let g = Self.rule(1, [(5, Self.G, Self.S), (5, Self.L, 0), (5, Self.G, 0)])
        #expect(QuotaRuleset.totlName(g, QuotaInput(op: 0, proj: 0, uid: 0, gid: 5)) == [5, 5, 5])
        // the limit is reached at equality; C compares the count
        #expect(!QuotaRuleset.exceeds(r, total: 9, count: 100))
        #expect(QuotaRuleset.exceeds(r, total: 10, count: 0))
        var c = r
        c.ruleFlags = QuotaRule.ruleFlagCount
        #expect(!QuotaRuleset.exceeds(c, total: 100, count: 9))
        #expect(QuotaRuleset.exceeds(c, total: 0, count: 10))
        c.limit = 0
        #expect(QuotaRuleset.exceeds(c, total: 0, count: 0))
    }
}
