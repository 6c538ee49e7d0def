/// Little-endian packing of the ioctl structs (the ABI is the host's, and every host we run on
/// is little-endian x86-64 or arm64).
public struct IoctlWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(v) }
    public mutating func u32(_ v: UInt32) { append(v) }
    public mutating func u64(_ v: UInt64) { append(v) }
    public mutating func s32(_ v: Int32) { append(UInt32(bitPattern: v)) }
    public mutating func s64(_ v: Int64) { append(UInt64(bitPattern: v)) }
    public mutating func pad(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    public mutating func raw(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads a struct's fields in order; reading past the end throws `IoctlDecodeError`.
public struct IoctlReader {
    public let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public mutating func u8() throws(IoctlDecodeError) -> UInt8 { try load() }
    public mutating func u16() throws(IoctlDecodeError) -> UInt16 { try load() }
    public mutating func u32() throws(IoctlDecodeError) -> UInt32 { try load() }
    public mutating func u64() throws(IoctlDecodeError) -> UInt64 { try load() }
    public mutating func s32() throws(IoctlDecodeError) -> Int32 { Int32(bitPattern: try load()) }
    public mutating func s64() throws(IoctlDecodeError) -> Int64 { Int64(bitPattern: try load()) }
    public mutating func skip(_ n: Int) throws(IoctlDecodeError) {
        guard n >= 0, offset + n <= bytes.count else { throw IoctlDecodeError(needed: offset + n, got: bytes.count) }
        offset += n
    }
    public mutating func take(_ n: Int) throws(IoctlDecodeError) -> [UInt8] {
        let start = offset
        try skip(n)
        return Array(bytes[start..<start + n])
    }

    private mutating func load<T: FixedWidthInteger>() throws(IoctlDecodeError) -> T {
        let n = MemoryLayout<T>.size
        guard offset + n <= bytes.count else { throw IoctlDecodeError(needed: offset + n, got: bytes.count) }
        var v: T = 0
        for i in 0..<n { v |= T(bytes[offset + i]) << (8 * i) }
        offset += n
        return v
    }
}

/// A struct was shorter than its layout.
public struct IoctlDecodeError: Error, Sendable, Equatable {
    public var needed: Int
    public var got: Int
}

/// One of the ioctl ABI's structs: a fixed size, packed and unpacked field by field.
public protocol IoctlStruct: Sendable {
    static var size: Int { get }
    init(_ r: inout IoctlReader) throws(IoctlDecodeError)
    func encode(_ w: inout IoctlWriter)
}

extension IoctlStruct {
    /// Unpacks `bytes` (at least ``size`` of them).
    public init(bytes: [UInt8]) throws(IoctlDecodeError) {
        var r = IoctlReader(bytes)
        try self.init(&r)
    }

    /// The struct's `size` bytes.
    public var encoded: [UInt8] {
        var w = IoctlWriter(capacity: Self.size)
        encode(&w)
        precondition(w.bytes.count == Self.size, "\(Self.self) packed \(w.bytes.count) bytes, not \(Self.size)")
        return w.bytes
    }

    /// Unpacks `count` consecutive structs from `bytes`.
    public static func array(_ bytes: [UInt8], count: Int) throws(IoctlDecodeError) -> [Self] {
        var r = IoctlReader(bytes)
        var out: [Self] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try Self(&r)) }
        return out
    }
}

extension Array where Element: IoctlStruct {
    /// The structs packed back to back.
    public var encoded: [UInt8] {
        var w = IoctlWriter(capacity: count * Element.size)
        for e in self { e.encode(&w) }
        return w.bytes
    }
}
