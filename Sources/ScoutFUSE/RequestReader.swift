import CFuseKernel

/// Bounds-checked reading of a request's argument bytes. A short or malformed request gives `EINVAL`, never a trap.
struct RequestReader {
    private let buffer: UnsafeRawBufferPointer
    private(set) var offset: Int = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    var remaining: Int { self.buffer.count - self.offset }

    /// Reads a C struct by value (native endianness, as the kernel writes it).
    mutating func read<T>(_ type: T.Type) throws(FUSEError) -> T {
        let size = MemoryLayout<T>.size
        guard self.remaining >= size else { throw FUSEError.invalid }
        let value = self.buffer.loadUnaligned(fromByteOffset: self.offset, as: T.self)
        self.offset += size
        return value
    }

    /// Reads a struct that older protocol versions send shorter: missing trailing bytes read as zero.
    mutating func readPrefix<T>(_ type: T.Type, zero: T, size: Int) throws(FUSEError) -> T {
        let full = MemoryLayout<T>.size
        let size = min(size, full)
        guard self.remaining >= size else { throw FUSEError.invalid }
        var value = zero
        withUnsafeMutableBytes(of: &value) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<self.offset + size]))
        }
        self.offset += size
        return value
    }

    /// Reads a NUL-terminated string as a ``FileName`` (without the NUL).
    mutating func name() throws(FUSEError) -> FileName {
        let rest = UnsafeRawBufferPointer(rebasing: self.buffer[self.offset...])
        guard let nul = rest.firstIndex(of: 0) else { throw FUSEError.invalid }
        let name = FileName(base: rest.baseAddress, count: nul)
        self.offset += nul + 1
        return name
    }

    /// Reads `count` raw bytes.
    mutating func bytes(_ count: Int) throws(FUSEError) -> UnsafeRawBufferPointer {
        guard count >= 0, self.remaining >= count else { throw FUSEError.invalid }
        let out = UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<self.offset + count])
        self.offset += count
        return out
    }

    /// All remaining bytes.
    mutating func rest() -> UnsafeRawBufferPointer {
        let out = UnsafeRawBufferPointer(rebasing: self.buffer[self.offset...])
        self.offset = self.buffer.count
        return out
    }
}
