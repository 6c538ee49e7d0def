/// crc32c (Castagnoli), as the original computes it: callers seed with `~0` and the result is
/// not inverted at the end (the raw Linux `crc32c()`).
public enum CRC32C {
    @usableFromInline
    static let tables: [[UInt32]] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xff)] }
        }
        return t
    }()

    /// Continues `crc` over `bytes` (slicing-by-8).
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = crc
        let n = bytes.count
        var i = 0
        tables.withUnsafeBufferPointer { tp in
            let t0 = tp[0], t1 = tp[1], t2 = tp[2], t3 = tp[3]
            let t4 = tp[4], t5 = tp[5], t6 = tp[6], t7 = tp[7]
            while n - i >= 8 {
                let lo = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c = t7[Int(lo & 0xff)] ^ t6[Int((lo >> 8) & 0xff)] ^ t5[Int((lo >> 16) & 0xff)]
                    ^ t4[Int(lo >> 24)] ^ t3[Int(hi & 0xff)] ^ t2[Int((hi >> 8) & 0xff)]
                    ^ t1[Int((hi >> 16) & 0xff)] ^ t0[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                let b = bytes[i]
                c = (c >> 8) ^ t0[Int((c ^ UInt32(b)) & 0xff)]
                i += 1
            }
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
