import Glibc
public import ScoutIoctl

extension ScoutAgent {
    /// GET_QUOTA_RULES: up to `max` rules in storage order from the cursor `iterator` on,
    /// which moves past the last one returned; empty when there are no more.
    public func getQuotaRules(iterator: inout [UInt64], max: Int = 1024) throws(AgentError) -> [QuotaRule] {
        let nr = Swift.max(1, max)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: nr * QuotaRule.size, alignment: 16)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        var arg = GetQuotaRulesArgs(iterator: iterator, rulesPtr: UInt64(UInt(bitPattern: buf.baseAddress)), rulesNr: UInt64(nr)).encoded
        let n = Int(try call(.getQuotaRules, &arg))
        guard let a = try? GetQuotaRulesArgs(bytes: arg) else { throw AgentError(command: .getQuotaRules, errno: EIO) }
        iterator = a.iterator
        return try Self.decode(Array(buf), count: Swift.min(n, nr), .getQuotaRules)
    }

    /// ADD_QUOTA_RULE (EEXIST when the rule exists).
    public func addQuotaRule(_ rule: QuotaRule) throws(AgentError) {
        var arg = rule.encoded
        try call(.addQuotaRule, &arg)
    }

    /// DEL_QUOTA_RULE (ENOENT when no rule has every field equal).
    public func delQuotaRule(_ rule: QuotaRule) throws(AgentError) {
        var arg = rule.encoded
        try call(.delQuotaRule, &arg)
    }
}
