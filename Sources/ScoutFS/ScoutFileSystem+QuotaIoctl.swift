import Glibc
import ScoutFUSE
import ScoutIoctl

/// The quota rule ioctls: GET_QUOTA_RULES, ADD_QUOTA_RULE and DEL_QUOTA_RULE, with the
/// original's checks (CAP_SYS_ADMIN, then the struct) and results.
extension ScoutFileSystem {
    func quotaIoctl(_ cmd: IoctlCommand, _ c: IoctlCall) throws -> IoctlReply? {
        switch cmd {
        case .getQuotaRules: return try getQuotaRules(c)
        case .addQuotaRule: return try modQuotaRule(c, add: true)
        case .delQuotaRule: return try modQuotaRule(c, add: false)
        default: return nil
        }
    }

    /// Rules in storage order from the cursor on into the caller's array, a batch (a page's
    /// worth in the original) at a time until the array is full or no rule is left; the
    /// cursor goes back past the last rule copied. None asked for: 0, with nothing read.
    private func getQuotaRules(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.sysAdmin)
        var a = try c.callerArgs(GetQuotaRulesArgs.self)
        guard a.rulesNr > 0 else { return IoctlReply(result: 0, output: a.encoded) }
        let nr = Int(min(a.rulesNr, UInt64(Int32.max), UInt64(CallerMemory.maxTransfer / QuotaRule.size)))
        var copied = 0
        while copied < nr {
            let cursor = (hash: a.iterator[0], coll: a.iterator[1])
            let r = try run { () throws(FSError) in try volume.quotaRules(from: cursor, limit: min(nr - copied, 4096)) }
            if r.rules.isEmpty { break }
            var w = IoctlWriter(capacity: r.rules.count * QuotaRule.size)
            for rule in r.rules { rule.encode(&w) }
            try c.memory.write(a.rulesPtr + UInt64(copied * QuotaRule.size), w.bytes)
            copied += r.rules.count
            a.iterator = [r.next.hash, r.next.coll]
        }
        return IoctlReply(result: Int32(copied), output: a.encoded)
    }

    private func modQuotaRule(_ c: IoctlCall, add: Bool) throws -> IoctlReply {
        try c.require(.sysAdmin)
        let rule = try c.args(QuotaRule.self)
        try run { () throws(FSError) in try volume.modifyQuotaRule(rule, add: add) }
        return IoctlReply(result: 0)
    }
}

extension ScoutFileSystem.IoctlCall {
    /// The struct of an ioctl the original declares `_IOR` but reads from the caller: the
    /// kernel passes no bytes in, so they come from the caller's memory at the argument.
    func callerArgs<T: IoctlStruct>(_: T.Type) throws -> T {
        var raw = [UInt8](repeating: 0, count: T.size)
        let r = raw.withUnsafeMutableBytes { buf in Result { () throws(FUSEError) in try memory.read(argument, into: buf) } }
        try r.get()
        return try T(bytes: raw)
    }
}
