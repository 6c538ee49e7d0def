/// The 32-byte item key: `first second third fourth zone type` and 5 pad bytes on disk.
///
/// Keys sort by zone, first, type, second, third, fourth, and behave as one multi-precision
/// number in that order for increment and decrement.
public struct Key: FixedCodable, Comparable, Hashable, CustomStringConvertible {
    public static let encodedSize = 32

    public var first: UInt64
    public var second: UInt64
    public var third: UInt64
    public var fourth: UInt8
    public var zone: UInt8
    public var type: UInt8

    @inlinable
    public init(zone: UInt8 = 0, first: UInt64 = 0, type: UInt8 = 0, second: UInt64 = 0, third: UInt64 = 0, fourth: UInt8 = 0) {
        self.zone = zone
        self.first = first
        self.type = type
        self.second = second
        self.third = third
        self.fourth = fourth
    }

    /// The smallest key.
    public static let zero = Key()
    /// The largest key, used on the right spine of parent blocks.
    public static let max = Key(zone: .max, first: .max, type: .max, second: .max, third: .max, fourth: .max)

    @inlinable
    public init(from r: inout ByteReader) throws(FormatError) {
        first = try r.u64()
        second = try r.u64()
        third = try r.u64()
        fourth = try r.u8()
        zone = try r.u8()
        type = try r.u8()
        try r.skip(5)
    }

    @inlinable
    public func encode(to w: inout ByteWriter) {
        w.u64(first)
        w.u64(second)
        w.u64(third)
        w.u8(fourth)
        w.u8(zone)
        w.u8(type)
        w.pad(5)
    }

    @inlinable
    public static func < (a: Key, b: Key) -> Bool {
        if a.zone != b.zone { return a.zone < b.zone }
        if a.first != b.first { return a.first < b.first }
        if a.type != b.type { return a.type < b.type }
        if a.second != b.second { return a.second < b.second }
        if a.third != b.third { return a.third < b.third }
        return a.fourth < b.fourth
    }

    /// The next key in sort order (wraps from `max` to `zero`).
    @inlinable
    public func incremented() -> Key {
        var k = self
        k.fourth &+= 1
        if k.fourth != 0 { return k }
        k.third &+= 1
        if k.third != 0 { return k }
        k.second &+= 1
        if k.second != 0 { return k }
        k.type &+= 1
        if k.type != 0 { return k }
        k.first &+= 1
        if k.first != 0 { return k }
        k.zone &+= 1
        return k
    }

    /// The previous key in sort order (wraps from `zero` to `max`).
    @inlinable
    public func decremented() -> Key {
        var k = self
        k.fourth &-= 1
        if k.fourth != .max { return k }
        k.third &-= 1
        if k.third != .max { return k }
        k.second &-= 1
        if k.second != .max { return k }
        k.type &-= 1
        if k.type != .max { return k }
        k.first &-= 1
        if k.first != .max { return k }
        k.zone &-= 1
        return k
    }

    /// The original's `SK_FMT`: `zone.first.type.second.third.fourth`.
    public var description: String {
        "\(zone).\(first).\(type).\(second).\(third).\(fourth)"
    }
}
