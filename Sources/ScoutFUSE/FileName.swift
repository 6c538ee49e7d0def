/// A name (or symlink target, or xattr name) inside a FUSE request buffer, without its terminating NUL.
///
/// It points into the reader thread's request buffer, so it is valid only during the call that receives it;
/// being `~Copyable` and passed `borrowing`, it cannot be stored. Copy out what must outlive the call
/// (``bytes``, ``string``).
public struct FileName: ~Copyable {
    @usableFromInline let base: UnsafeRawPointer?
    /// Length in bytes.
    public let count: Int

    @usableFromInline init(base: UnsafeRawPointer?, count: Int) {
        self.base = base
        self.count = count
    }

    /// Calls `body` with the name's bytes (no copy).
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: self.base, count: self.count))
    }

    /// Calls `body` with the name's bytes as a span (no copy).
    @inlinable
    public func withSpan<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        let buffer = UnsafeRawBufferPointer(start: self.base, count: self.count)
        return try body(buffer.bytes)
    }

    /// A copy of the bytes.
    public var bytes: [UInt8] {
        self.withUnsafeBytes { Array($0) }
    }

    /// The name decoded as UTF-8 (invalid sequences repaired): for logs and tests, not for keys.
    public var string: String {
        self.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
    }

    /// `"."`
    public var isDot: Bool {
        self.count == 1 && self.byte(0) == UInt8(ascii: ".")
    }

    /// `".."`
    public var isDotDot: Bool {
        self.count == 2 && self.byte(0) == UInt8(ascii: ".") && self.byte(1) == UInt8(ascii: ".")
    }

    /// Whether the name equals `other`'s UTF-8 bytes.
    public func equals(_ other: String) -> Bool {
        var other = other
        return other.withUTF8 { o in
            self.withUnsafeBytes { s in s.elementsEqual(o) }
        }
    }

    /// Whether the name starts with `prefix`'s UTF-8 bytes.
    public func hasPrefix(_ prefix: String) -> Bool {
        var prefix = prefix
        return prefix.withUTF8 { p in
            self.withUnsafeBytes { s in s.count >= p.count && s.prefix(p.count).elementsEqual(p) }
        }
    }

    private func byte(_ i: Int) -> UInt8 {
        self.withUnsafeBytes { $0[i] }
    }
}
