import ArgumentParser
import Glibc
import ScoutIoctl
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// The quota rule text (read and printed as the original's quota.c does) and the quota
/// commands' argp checks, without a mount; with the original utility at hand, its parsing of
/// the same texts.
@Suite struct QuotaCommandTests {
    static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"

    static func parse(_ s: String) -> QuotaRuleText.Parsed { QuotaRuleText.parse(Array(s.utf8)) }
    static func message(_ s: String) -> String? {
        if case .invalid(let m) = parse(s) { return String(decoding: m, as: UTF8.self) }
        return nil
    }
    static func rule(_ s: String) -> QuotaRule? {
        if case .rule(let r) = parse(s) { return r }
        return nil
    }

    @Test func textOfTheOriginalsExamples() throws {
        let r = try #require(Self.rule("7 13,L,- 15,L,- 17,L,- I 33 -"))
        #expect(r == QuotaRule(prio: 7, nameVal: [13, 15, 17], op: QuotaRule.opInode, limit: 33))
        #expect(QuotaRuleText.format(r) == "  7 13,L,- 15,L,- 17,L,- I 33 -")
        let s = try #require(Self.rule("1 22222,U,S 44444,G,S 1,L,- D 0 C"))
        #expect(s.nameSource == [QuotaRule.sourceUID, QuotaRule.sourceGID, QuotaRule.sourceLiteral])
        #expect(s.nameFlags == [1, 1, 0] && s.op == QuotaRule.opData && s.ruleFlags == QuotaRule.ruleFlagCount)
        #expect(QuotaRuleText.format(s) == "  1 22222,U,S 44444,G,S 1,L,- D 0 C")
        let p = try #require(Self.rule("255 18446744073709551615,P,S 0,L,- 0,L,- I 18446744073709551615 -"))
        #expect(QuotaRuleText.format(p) == "255 18446744073709551615,P,S 0,L,- 0,L,- I 18446744073709551615 -")
    }

    @Test func printedRulesReadBackTheSame() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            var r = QuotaRule()
            r.prio = UInt8(truncatingIfNeeded: rng.next())
            for i in 0..<3 {
                r.nameVal[i] = rng.next() % 3 == 0 ? rng.next() : rng.next() % 100
                r.nameSource[i] = UInt8(rng.next() % 4)
                r.nameFlags[i] = r.nameSource[i] != QuotaRule.sourceLiteral && rng.next() % 2 == 0 ? 1 : 0
            }
            r.op = UInt8(rng.next() % 2)
            r.limit = rng.next() % 2 == 0 ? rng.next() : rng.next() % 1000
            r.ruleFlags = UInt8(rng.next() % 2)
            let text = QuotaRuleText.format(r)
            #expect(Self.rule(text) == r, "\(text)")
            // quota-restore reads list output a line at a time, newline included
            #expect(Self.rule(text + "\n") == r)
        }
    }

    /// sscanf's ways: white space anywhere a conversion skips it, none inside a name (%c takes
    /// the next byte), a wrapping sign, a truncated priority, anything after the last field.
    @Test func readAsSscanfReadsIt() {
        #expect(Self.rule("  \t7   13,L,-\t15,L,-   17,L,-   I   33   -  trailing words") != nil)
        #expect(Self.rule("300 1,L,- 1,L,- 1,L,- I 1 -")?.prio == 44)
        #expect(Self.rule("+1 1,L,- 1,L,- 1,L,- I 1 -")?.prio == 1)
        #expect(Self.rule("1 -1,L,- 1,L,- 1,L,- I 1 -")?.nameVal[0] == .max)
        #expect(Self.rule("1 99999999999999999999999,L,- 1,L,- 1,L,- I 1 -")?.nameVal[0] == .max)
        // base 10: 0x10 reads 0, and 'x' is then the (unknown) rule flag
        #expect(Self.rule("1 1,L,- 1,L,- 1,L,- I 0x10 -").map { ($0.limit, $0.ruleFlags) } ?? (1, 1) == (0, 0xfe))
        // %c takes the space as the source, and the ',' that must follow is 'L'
        #expect(Self.message("1 1, L,- 1,L,- 1,L,- I 1 -") == "invalid rule, missing fields: 1 1, L,- 1,L,- 1,L,- I 1 -\n")
        #expect(Self.message("1 1,L,- 1, ,- 1,L,- I 1 -") == "invalid name source ' ' in name #2 in rule:\n\t1 1,L,- 1, ,- 1,L,- I 1 -\n")
        #expect(Self.message("1 1 ,L,- 1,L,- 1,L,- I 1 -") == "invalid rule, missing fields: 1 1 ,L,- 1,L,- 1,L,- I 1 -\n")
    }

    @Test func malformedTextGetsTheOriginalsMessages() throws {
        #expect(Self.message("1 2") == "invalid rule, missing fields: 1 2\n")
        #expect(Self.message("") == "invalid rule, missing fields: \n")
        #expect(Self.message("\n") == "invalid rule, missing fields: \n\n")
        #expect(Self.message("1 1,L,- 1,L,- 1,L,- I 1") == "invalid rule, missing fields: 1 1,L,- 1,L,- 1,L,- I 1\n")
        #expect(Self.message("1 1,X,- 1,L,- 1,L,- I 1 -") == "invalid name source 'X' in name #1 in rule:\n\t1 1,X,- 1,L,- 1,L,- I 1 -\n")
        #expect(Self.message("1 1,L,- 1,l,- 1,L,- I 1 -") == "invalid name source 'l' in name #2 in rule:\n\t1 1,L,- 1,l,- 1,L,- I 1 -\n")
        #expect(Self.message("1 1,L,- 1,L,- 1,L,- Q 1 -") == "invalid op 'Q' in rule:\n\t1 1,L,- 1,L,- 1,L,- Q 1 -\n")
        // sources name by name, then the op
        #expect(Self.message("1 1,L,- 1,X,- 1,Y,- Q 1 -")?.hasPrefix("invalid name source 'X' in name #2") == true)
        // an unknown flag is not refused here (the original's check never fires): its bits
        // reach the filesystem, which refuses the rule with EINVAL
        let badFlags = try #require(Self.rule("1 1,L,- 1,L,- 1,L,x I 1 c"))
        #expect(badFlags.nameFlags[2] == 0xfe && badFlags.ruleFlags == 0xfe && badFlags.invalidReason != nil)
        #expect(QuotaRuleText.format(badFlags) == "  1 1,L,- 1,L,- 1,L,- I 1 -")
        // a literal that selects parses: the filesystem refuses it (EINVAL)
        #expect(Self.rule("1 1,L,S 1,L,- 1,L,- I 1 -")?.invalidReason != nil)
    }

    @Test func argpChecks() {
        #expect(throws: ArgpError.usage("must provide file path")) { try QuotaModOptions.parse(["-r", "x"]).plan() }
        #expect(throws: ArgpError.usage("must provide file path")) { try QuotaModOptions.parse([]).plan() }
        #expect(throws: ArgpError.usage("must provide rule string")) { try QuotaModOptions.parse(["-p", "/"]).plan() }
        #expect((try? QuotaModOptions.parse(["-p", "/", "-r", "-1 x", "extra"]).plan())?.rule == "-1 x")
        #expect(throws: ArgpError.usage("must provide file path")) { try QuotaBulkOptions.parse([]).plan() }
        #expect(throws: Never.self) { try QuotaBulkOptions.parse(["-p", "/mnt", "-U"]).plan() }
        #expect((try? QuotaBulkOptions.parse(["--path", "/mnt", "--unsorted"]))?.unsorted == true)
    }

    /// Standard output, standard error and the exit status of a shell command line.
    static func run(_ cmd: String) -> (out: String, err: String, rc: Int32) {
        let base = "/tmp/scoutfs-quota-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let status = system("(\(cmd)) > \(base).out 2> \(base).err")
        defer {
            unlink(base + ".out")
            unlink(base + ".err")
        }
        return ((try? TempDir.readText(base + ".out")) ?? "", (try? TempDir.readText(base + ".err")) ?? "", (status >> 8) & 0xff)
    }

    static func quoted(_ s: String) -> String { "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" }

    /// The original's quota-add on a path outside scoutfs: a text it parses reaches the ioctl
    /// (ENOTTY), one it does not prints its message and fails with EINVAL. Ours must do the
    /// same for every text: the listed tricky ones and random mutations of good ones.
    @Test(.enabled(if: access(Self.original, X_OK) == 0)) func parsesAsTheOriginalDoes() {
        var texts = [
            "7 13,L,- 15,L,- 17,L,- I 33 -", "1 2", "", " ", "1 1,L,- 1,L,- 1,L,- I 1", "1 1, L,- 1,L,- 1,L,- I 1 -",
            "300 1,L,- 1,L,- 1,L,- I 1 -", "-1 1,L,- 1,L,- 1,L,- I 1 -", "1 1,L,- 1,L,- 1,L,- I 0x10 -",
            "1 1,L,- 1,L,- 1,L,-I 1 -", "1 1,L,- 1,L,- 1,L,- I1 -", "1 1,L,- 1,L,- 1,L,- I 1-", "1 1,L,S 1,L,- 1,L,- I 1 -",
            "1\t1,P,S\t1,L,-\t1,L,-\tD\t5\tC", "1 1,L,- 1,L,- 1,L,- I 1 - extra", "1,1,L,- 1,L,- 1,L,- I 1 -", "x",
        ]
        var rng = SplitMix64(seed: 3)
        let alphabet = Array(" ,-0123456789LPUGSIDCXx+\t")
        for _ in 0..<150 {
            var t = Array("  \(rng.next() % 300) \(rng.next() % 50),\(["L", "P", "U", "G"][Int(rng.next() % 4)]),- 1,U,S 2,G,- \(["I", "D"][Int(rng.next() % 2)]) \(rng.next() % 99) -")
            for _ in 0..<(1 + rng.next() % 3) {
                let i = Int(rng.next() % UInt64(t.count))
                switch rng.next() % 3 {
                case 0: t.remove(at: i)
                case 1: t.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: i)
                default: t[i] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                }
            }
            texts.append(String(t))
        }
        for t in texts {
            let a = Self.run("\(Proc.binary) quota-add -p /tmp -r \(Self.quoted(t))")
            let b = Self.run("\(Self.original) quota-add -p /tmp -r \(Self.quoted(t))")
            #expect(a.out == b.out && a.err == b.err && a.rc == b.rc, "\(t.debugDescription): ours \(a) original \(b)")
        }
        // argp's checks, and a path that does not open
        for args in ["", "-p /tmp", "-r '1 2'", "-p /nonexistent -r '1 1,L,- 1,L,- 1,L,- I 1 -'", "-p /nonexistent -r x"] {
            for cmd in ["quota-add", "quota-del"] {
                let a = Self.run("\(Proc.binary) \(cmd) \(args)")
                let b = Self.run("\(Self.original) \(cmd) \(args)")
                #expect(a.out == b.out && a.err == b.err && a.rc == b.rc, "\(cmd) \(args): ours \(a) original \(b)")
            }
        }
        for args in ["", "-U", "-p /nonexistent", "-p /tmp", "-p /tmp -U"] {
            for cmd in ["quota-list", "quota-wipe", "quota-restore"] {
                let a = Self.run("\(Proc.binary) \(cmd) \(args) < /dev/null")
                let b = Self.run("\(Self.original) \(cmd) \(args) < /dev/null")
                #expect(a.out == b.out && a.err == b.err && a.rc == b.rc, "\(cmd) \(args): ours \(a) original \(b)")
            }
        }
    }
}
