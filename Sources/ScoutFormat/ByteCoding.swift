/// Little-endian reads from a raw buffer at a moving offset.
///
/// The reader checks every bound and throws `FormatError.short` instead of trapping, so
/// arbitrary bytes can be fed to every decoder.
public struct ByteReader {
    /// The bytes being read; the caller keeps them alive while the reader is in use.
    @usableFromInline let bytes: UnsafeRawBufferPointer
    /// The next byte to read.
    public var offset: Int
    @usableFromInline let structureName: String
    /// The type being decoded, named only when an error is thrown (naming a type is a
    /// runtime demangling, far dearer than decoding a small value).
    @usableFromInline let structureType: Any.Type?

    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer, structure: String, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
        self.structureName = structure
        self.structureType = nil
    }

    /// A reader whose errors name `type`.
    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer, decoding type: Any.Type, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
        self.structureName = ""
        self.structureType = type
    }

    /// The name errors give the structure being read.
    @usableFromInline var structure: String {
        structureType.map { String(describing: $0) } ?? structureName
    }

    /// Bytes left after `offset`.
    @inlinable public var remaining: Int { bytes.count - offset }

    @inlinable
    func need(_ n: Int) throws(FormatError) {
        if offset < 0 || n > bytes.count - offset {
            throw .short(structure: structure, need: offset + n, have: bytes.count)
        }
    }

    @inlinable
    public mutating func u8() throws(FormatError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    @inlinable
    public mutating func u16() throws(FormatError) -> UInt16 {
        try need(2)
        defer { offset += 2 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable
    public mutating func u32() throws(FormatError) -> UInt32 {
        try need(4)
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable
    public mutating func u64() throws(FormatError) -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Reads `n` raw bytes.
    @inlinable
    public mutating func bytes(_ n: Int) throws(FormatError) -> [UInt8] {
        try need(n)
        var out = [UInt8](repeating: 0, count: n)
        for i in 0..<n { out[i] = bytes[offset + i] }
        offset += n
        return out
    }

    /// Skips `n` bytes (padding).
    @inlinable
    public mutating func skip(_ n: Int) throws(FormatError) {
        try need(n)
        offset += n
    }

    /// Decodes a nested fixed-size structure.
    @inlinable
    public mutating func read<T: FixedCodable>(_: T.Type = T.self) throws(FormatError) -> T {
        try T(from: &self)
    }
}

/// Little-endian writes into a growable byte array.
public struct ByteWriter {
    /// The bytes written so far.
    public var bytes: [UInt8]

    @inlinable
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable public mutating func u8(_ v: UInt8) { bytes.append(v) }
    @inlinable public mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }
    @inlinable public mutating func u32(_ v: UInt32) {
        for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
    }
    @inlinable public mutating func u64(_ v: UInt64) {
        for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }
    /// Appends raw bytes.
    @inlinable public mutating func bytes(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }
    /// Appends `n` zero bytes of padding.
    @inlinable public mutating func pad(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    /// Encodes a nested fixed-size structure.
    @inlinable public mutating func write(_ v: some FixedCodable) { v.encode(to: &self) }
}

/// A structure with one fixed encoded size, as laid out in the original's `format.h`.
public protocol FixedCodable: Equatable, Sendable {
    /// Encoded size in bytes (the C `sizeof`).
    static var encodedSize: Int { get }
    /// Decodes from the reader's current offset, advancing it by `encodedSize`.
    init(from reader: inout ByteReader) throws(FormatError)
    /// Appends exactly `encodedSize` bytes.
    func encode(to writer: inout ByteWriter)
}

extension FixedCodable {
    /// Decodes a value from the start of `bytes`.
    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(FormatError) -> Self {
        var r = ByteReader(bytes, decoding: Self.self)
        return try Self(from: &r)
    }

    /// Decodes a value from the start of `bytes`.
    @inlinable
    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> Self {
        let result: Result<Self, FormatError> = bytes.withUnsafeBytes { raw in
            Result { () throws(FormatError) -> Self in try decode(raw) }
        }
        return try result.get()
    }

    /// The encoded bytes, exactly `encodedSize` long.
    @inlinable
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.encodedSize)
        encode(to: &w)
        return w.bytes
    }
}
