import ArgumentParser
import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

// The original's quota commands (utils/src/quota.c): quota-add and quota-del change one rule,
// quota-list prints every rule, quota-wipe deletes them all and quota-restore adds the rules
// of quota-list's output read on standard input. The rule text, its messages (on standard
// output, as the original prints them) and the order of the checks are the original's.

/// The text of a quota rule, read and printed as the original does:
/// `PRIO VAL,SRC,FLAG VAL,SRC,FLAG VAL,SRC,FLAG OP LIMIT RFLAG`, for example
/// `  7 13,L,- 15,L,- 17,L,- I 33 -`. SRC is L (literal), P (project), U (uid) or G (gid),
/// FLAG `-` or S (select), OP I (inode creation) or D (data allocation), RFLAG `-` or C
/// (compare the count of xattrs rather than their total).
enum QuotaRuleText {
    static let sources: [UInt8] = Array("LPUG".utf8)
    static let ops: [UInt8] = Array("ID".utf8)

    /// A rule or why the text is not one: the message the original prints (its `%s` is the
    /// text as given, a line read from standard input with its newline).
    enum Parsed: Equatable {
        case rule(QuotaRule)
        case invalid([UInt8])
    }

    /// The text of `r`: printf("%3u ", then "%llu,%c,%c " three times, then "%c %llu %c").
    static func format(_ r: QuotaRule) -> String {
        var s = rightJustified(String(r.prio), 3) + " "
        func char(_ table: [UInt8], _ i: UInt8) -> Character { i < table.count ? Character(UnicodeScalar(table[Int(i)])) : "?" }
        for i in 0..<3 {
            s += "\(r.nameVal[i]),\(char(sources, r.nameSource[i])),\(r.selects(i) ? "S" : "-") "
        }
        return s + "\(char(ops, r.op)) \(r.limit) \(r.ruleFlags & QuotaRule.ruleFlagCount != 0 ? "C" : "-")"
    }

    /// What a flag other than `-`, `S` (names) or `C` (the rule) becomes: the original means
    /// to refuse it with a message, but its check compares the byte with a negative int and
    /// never fires, so the bits `~1` go to the filesystem, which refuses the rule (EINVAL).
    static let unknownFlags: UInt8 = 0xfe

    /// `parse_rule`: the fields as sscanf(" %hhu %llu,%c,%c %llu,%c,%c %llu,%c,%c %c %llu %c")
    /// reads them (anything after the last field is ignored), then each name's source and
    /// the op, in that order (the flags: see ``unknownFlags``).
    static func parse(_ text: [UInt8]) -> Parsed {
        var scan = CScanner(text)
        var fields: [UInt64] = []
        var chars: [UInt8] = []
        func number() -> Bool {
            guard let v = scan.unsigned() else { return false }
            fields.append(v)
            return true
        }
        func char() -> Bool {
            guard let c = scan.char() else { return false }
            chars.append(c)
            return true
        }
        var complete = number()
        for _ in 0..<3 where complete {
            complete = number() && scan.literal(UInt8(ascii: ",")) && char() && scan.literal(UInt8(ascii: ",")) && char()
        }
        if complete {
            scan.skipSpace()
            complete = char() && number()
            scan.skipSpace()
            complete = complete && char()
        }
        guard complete else { return .invalid(Array("invalid rule, missing fields: ".utf8) + text + [10]) }
        var r = QuotaRule(prio: UInt8(truncatingIfNeeded: fields[0]), nameVal: Array(fields[1...3]), limit: fields[4])
        for i in 0..<3 {
            let (src, flag) = (chars[i * 2], chars[i * 2 + 1])
            guard let s = sources.firstIndex(of: src) else {
                return .invalid(Array("invalid name source '".utf8) + [src] + Array("' in name #\(i + 1) in rule:\n\t".utf8) + text + [10])
            }
            r.nameSource[i] = UInt8(s)
            r.nameFlags[i] = flag == UInt8(ascii: "-") ? 0 : flag == UInt8(ascii: "S") ? QuotaRule.nameFlagSelect : unknownFlags
        }
        guard let op = ops.firstIndex(of: chars[6]) else {
            return .invalid(Array("invalid op '".utf8) + [chars[6]] + Array("' in rule:\n\t".utf8) + text + [10])
        }
        r.op = UInt8(op)
        r.ruleFlags = chars[7] == UInt8(ascii: "-") ? 0 : chars[7] == UInt8(ascii: "C") ? QuotaRule.ruleFlagCount : unknownFlags
        return .rule(r)
    }
}

/// The few sscanf conversions the rule text uses, as glibc does them: `%llu` (and `%hhu`,
/// truncated by the caller) skips white space, takes an optional sign and decimal digits,
/// saturating at the largest value, and negates a `-` modulo 2^64; `%c` takes the next byte
/// whatever it is; a literal byte must come next; a space skips any white space.
struct CScanner {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func isSpace(_ b: UInt8) -> Bool { b == 32 || (9...13).contains(b) }

    mutating func skipSpace() {
        while pos < bytes.count, Self.isSpace(bytes[pos]) { pos += 1 }
    }

    mutating func unsigned() -> UInt64? {
        skipSpace()
        var negative = false
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") {
            negative = bytes[pos] == UInt8(ascii: "-")
            pos += 1
        }
        guard pos < bytes.count, (48...57).contains(bytes[pos]) else { return nil }
        var v: UInt64 = 0
        var overflow = false
        while pos < bytes.count, (48...57).contains(bytes[pos]) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(bytes[pos] - 48))
            overflow = overflow || o1 || o2
            v = a
            pos += 1
        }
        if overflow { return .max }
        return negative ? 0 &- v : v
    }

    mutating func char() -> UInt8? {
        guard pos < bytes.count else { return nil }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func literal(_ b: UInt8) -> Bool {
        guard pos < bytes.count, bytes[pos] == b else { return false }
        pos += 1
        return true
    }
}

private let quotaPathHelp = ArgumentHelp("Path to ScoutFS filesystem", valueName: "PATH")

/// The ioctl's failure as the original reports it: "NAME ioctl failed: STRERROR (ERRNO)".
private func ioctlFailed(_ name: String, _ e: AgentError) -> ArgpError {
    .failed(e.errno, after: [errnoLine("\(name) ioctl failed", e.errno)])
}

/// `scoutfs quota-add -p PATH -r RULE` and `quota-del`: one ADD_QUOTA_RULE or DEL_QUOTA_RULE.
struct QuotaModOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: quotaPathHelp) var path: String?
    @Option(name: .shortAndLong, parsing: .unconditional, help: ArgumentHelp("Rule string", valueName: "RULE_STRING")) var rule: String?
    @Argument(help: .hidden) var ignored: [String] = []

    /// argp's checks at the end of parsing: the path first, then the rule.
    func plan() throws(ArgpError) -> (path: String, rule: String) {
        guard let path else { throw .usage("must provide file path") }
        guard let rule else { throw .usage("must provide rule string") }
        return (path, rule)
    }

    /// The rule is parsed before the path is opened, as the original does.
    static func execute(path: String, rule text: String, add: Bool, _ out: Output) throws(ArgpError) {
        let rule: QuotaRule
        switch QuotaRuleText.parse(Array(text.utf8)) {
        case .rule(let r): rule = r
        case .invalid(let msg):
            out.raw(msg)
            throw .failed(EINVAL)
        }
        let agent = try openFile(path, O_RDONLY)
        defer { agent.close() }
        do {
            if add { try agent.addQuotaRule(rule) } else { try agent.delQuotaRule(rule) }
        } catch {
            throw ioctlFailed("MOD_QUOTA_RULE", error)
        }
    }

    func run(_ command: String, add: Bool) throws {
        try runArgp(command) { out throws(ArgpError) in
            let p = try plan()
            try Self.execute(path: p.path, rule: p.rule, add: add, out)
        }
    }
}

struct QuotaAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quota-add", abstract: "Add quota rule")
    @OptionGroup var options: QuotaModOptions
    func run() throws { try options.run("quota-add", add: true) }
}

struct QuotaDelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quota-del", abstract: "Delete quota rule")
    @OptionGroup var options: QuotaModOptions
    func run() throws { try options.run("quota-del", add: false) }
}

/// The original's `do_bulk`: rules come in batches (from GET_QUOTA_RULES, or one line of
/// standard input at a time) and go out one by one (printed, deleted or added); sorted from
/// high to low first unless `unsorted`, which sends each batch out as it comes.
struct QuotaBulk {
    /// Where rules come from: the next batch of at most `room`, empty at the end.
    var next: (_ room: Int) throws(ArgpError) -> [QuotaRule]
    /// Where each goes.
    var each: (QuotaRule) throws(ArgpError) -> Void

    func run(unsorted: Bool) throws(ArgpError) {
        var all: [QuotaRule] = []
        // the original grows its array 1024 rules at a time and asks for what fits
        while true {
            let room = unsorted ? 1024 : 1024 - all.count % 1024
            let batch = try next(room)
            if batch.isEmpty { break }
            if unsorted {
                for r in batch { try each(r) }
            } else {
                all += batch
            }
        }
        if !unsorted {
            for r in all.sorted(by: >) { try each(r) }
        }
    }

    /// Batches from GET_QUOTA_RULES, its cursor kept between calls.
    static func fromIoctl(_ agent: ScoutAgent) -> (Int) throws(ArgpError) -> [QuotaRule] {
        var iterator: [UInt64] = [0, 0]
        return { room throws(ArgpError) in
            do throws(AgentError) {
                return try agent.getQuotaRules(iterator: &iterator, max: room)
            } catch {
                throw ioctlFailed("GET_QUOTA_RULES", error)
            }
        }
    }

    /// One ADD or DEL per rule; a failure prints the rule (standard output) and the error.
    static func modify(_ agent: ScoutAgent, add: Bool, _ out: Output) -> (QuotaRule) throws(ArgpError) -> Void {
        { r throws(ArgpError) in
            do throws(AgentError) {
                if add { try agent.addQuotaRule(r) } else { try agent.delQuotaRule(r) }
            } catch {
                out.line("Failed to \(add ? "add" : "delete") following rule:")
                out.line("    " + QuotaRuleText.format(r))
                throw .failed(error.errno, after: [errnoLine("Error", error.errno)])
            }
        }
    }
}

/// The options of the bulk commands: `-p PATH` (required) and `-U`.
struct QuotaBulkOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: quotaPathHelp) var path: String?
    @Flag(name: [.customShort("U"), .long], help: "Process rules in unsorted filesystem storage order") var unsorted = false
    @Argument(help: .hidden) var ignored: [String] = []

    func plan() throws(ArgpError) -> String {
        guard let path else { throw .usage("must provide file path") }
        return path
    }

    /// Opens the path (after argp's check), then runs the bulk operation `make` builds.
    func run(_ command: String, _ make: @escaping (ScoutAgent, Output) throws(ArgpError) -> QuotaBulk) throws {
        try runArgp(command) { out throws(ArgpError) in
            let agent = try openFile(try plan(), O_RDONLY)
            defer { agent.close() }
            try make(agent, out).run(unsorted: unsorted)
        }
    }
}

struct QuotaListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quota-list", abstract: "List quota rules")
    @OptionGroup var options: QuotaBulkOptions

    func run() throws {
        try options.run("quota-list") { agent, out in QuotaBulk(next: QuotaBulk.fromIoctl(agent), each: { out.line(QuotaRuleText.format($0)) }) }
    }
}

struct QuotaWipeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quota-wipe", abstract: "Delete all quota rules")
    @OptionGroup var options: QuotaBulkOptions

    func run() throws {
        try options.run("quota-wipe") { agent, out in QuotaBulk(next: QuotaBulk.fromIoctl(agent), each: QuotaBulk.modify(agent, add: false, out)) }
    }
}

struct QuotaRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota-restore", abstract: "Restore quota rules from list output on stdin")
    @OptionGroup var options: QuotaBulkOptions

    /// One rule a line of standard input (a line that is not one stops the restore).
    static func lines(_ file: UnsafeMutablePointer<FILE>, _ out: Output) -> (Int) throws(ArgpError) -> [QuotaRule] {
        { _ throws(ArgpError) in
            var line: UnsafeMutablePointer<CChar>? = nil
            var size = 0
            defer { free(line) }
            let n = getline(&line, &size, file)
            guard n >= 0, let line else { return [] }
            let bytes = UnsafeRawBufferPointer(start: line, count: n).map { $0 }
            switch QuotaRuleText.parse(bytes) {
            case .rule(let r): return [r]
            case .invalid(let msg):
                out.raw(msg)
                throw .failed(EINVAL)
            }
        }
    }

    func run() throws {
        try options.run("quota-restore") { agent, out throws(ArgpError) in
            guard let input = fdopen(0, "r") else { throw .failed(errno, after: [errnoLine("error reading rules", errno)]) }
            return QuotaBulk(next: Self.lines(input, out), each: QuotaBulk.modify(agent, add: true, out))
        }
    }
}
