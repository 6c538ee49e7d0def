import CCRC32C

/// crc32c (Castagnoli), as the original computes it: callers seed with `~0` and the result is
/// not inverted at the end (the raw Linux `crc32c()`).
public enum CRC32C {
    /// The slicing-by-8 tables, eight runs of 256 entries in one allocation that lives as
    /// long as the process: read through a pointer, so the loop below stays cheap even in
    /// unoptimised builds (array subscripts there cost a call and a bounds check each).
    nonisolated(unsafe) static let tables: UnsafePointer<UInt32> = {
        let t = UnsafeMutablePointer<UInt32>.allocate(capacity: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xff)] }
        }
        return UnsafePointer(t)
    }()

    /// Whether the CPU computes it (SSE 4.2's crc32 instruction): 64 KiB in a few
    /// microseconds, against tens with the tables; every block read verifies one.
    static let hardware = scout_crc32c_hw_available() != 0

    /// Continues `crc` over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        if hardware { return scout_crc32c_hw(crc, base, bytes.count) }
        return updateWithTables(crc, base, bytes.count)
    }

    /// Continues `crc` over `n` bytes at `base` with the tables (slicing-by-8).
    static func updateWithTables(_ crc: UInt32, _ base: UnsafeRawPointer, _ n: Int) -> UInt32 {
        var c = crc
        let t = tables
        var p = base.assumingMemoryBound(to: UInt8.self)
        let end = p + n
        while end - p >= 8 {
            let lo = (UInt32(p.pointee) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24) ^ c
            let hi = UInt32(p[4]) | UInt32(p[5]) << 8 | UInt32(p[6]) << 16 | UInt32(p[7]) << 24
            c = (t + 7 * 256 + Int(lo & 0xff)).pointee ^ (t + 6 * 256 + Int((lo >> 8) & 0xff)).pointee
                ^ (t + 5 * 256 + Int((lo >> 16) & 0xff)).pointee ^ (t + 4 * 256 + Int(lo >> 24)).pointee
                ^ (t + 3 * 256 + Int(hi & 0xff)).pointee ^ (t + 2 * 256 + Int((hi >> 8) & 0xff)).pointee
                ^ (t + 256 + Int((hi >> 16) & 0xff)).pointee ^ (t + Int(hi >> 24)).pointee
            p += 8
        }
        while p < end {
            c = (c >> 8) ^ (t + Int((c ^ UInt32(p.pointee)) & 0xff)).pointee
            p += 1
        }
        return c
    }

    /// crc32c seeded with `~0`, not inverted: the checksum the original stores in block headers.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(~0, bytes)
    }

    /// Convenience over an array.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
