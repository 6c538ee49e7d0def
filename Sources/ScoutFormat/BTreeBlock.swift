/// Fields of one item in a btree block (`struct scoutfs_btree_item`, 56 bytes).
public struct BTreeItemHeader: Equatable, Sendable {
    /// AVL links: offsets relative to the block's `item_root` field (byte 32), 0 for none.
    public var parent: UInt16
    public var left: UInt16
    public var right: UInt16
    public var height: UInt8
    public var key: Key
    public var seq: UInt64
    /// Absolute byte offset of the value in the block.
    public var valOff: UInt16
    public var valLen: UInt16
    public var flags: UInt8
}

/// A view of a 64 KiB btree block (`struct scoutfs_btree_block`) laid out as the original:
///
/// - a 48-byte header: block header, AVL root, `nr_items`, `total_item_bytes`, `mid_free_len`, `level`;
/// - a dense array of 56-byte items growing from byte 48;
/// - values, 8-byte aligned, growing down from the end (in leaves, from the start of the hash table);
/// - in leaves only, a 1512-bucket table of u16 item offsets, linearly probed from
///   `fnv1a32(key) % 1512`, in the last 3024 bytes.
///
/// AVL links are stored as offsets relative to the `item_root` field at byte 32, so an item at
/// byte offset `o` is linked as `o - 32`. Hash buckets hold absolute item offsets.
public struct BTreeBlock {
    public static let headerSize = 48
    public static let itemSize = 56
    public static let avlRootOffset = 32
    public static let hashNr = 1512
    public static let hashBytes = hashNr * 2
    public static let hashOffset = Format.largeBlockSize - hashBytes

    public let buffer: BlockBuffer

    public init(_ buffer: BlockBuffer) { self.buffer = buffer }

    /// AVL root: offset relative to byte 32 of the root item, 0 when empty.
    public var itemRoot: UInt16 {
        get { buffer.u16(32) }
        nonmutating set { buffer.setU16(32, newValue) }
    }
    public var nrItems: Int {
        get { Int(buffer.u16(34)) }
        nonmutating set { buffer.setU16(34, UInt16(newValue)) }
    }
    /// Bytes used by items and their (aligned) values.
    public var totalItemBytes: Int {
        get { Int(buffer.u16(36)) }
        nonmutating set { buffer.setU16(36, UInt16(newValue)) }
    }
    /// Free bytes between the end of the item array and the lowest value.
    public var midFreeLen: Int {
        get { Int(buffer.u16(38)) }
        nonmutating set { buffer.setU16(38, UInt16(newValue)) }
    }
    public var level: UInt8 {
        get { buffer.u8(40) }
        nonmutating set { buffer.setU8(40, newValue) }
    }

    /// Byte offset of the item at array index `i`.
    @inlinable public static func itemOffset(_ i: Int) -> Int { headerSize + i * itemSize }

    /// Where values end: the hash table in leaves, the block end in parents.
    public var valuesEnd: Int { level == 0 ? Self.hashOffset : Format.largeBlockSize }

    /// Reads the item at absolute byte offset `off`.
    public func item(at off: Int) -> BTreeItemHeader {
        let b = buffer
        var r = ByteReader(UnsafeRawBufferPointer(b.bytes), structure: "BTreeItem", offset: off + 8)
        // the key read cannot fail: callers pass offsets inside the item array
        let key = (try? Key(from: &r)) ?? Key.zero
        return BTreeItemHeader(
            parent: b.u16(off), left: b.u16(off + 2), right: b.u16(off + 4), height: b.u8(off + 6),
            key: key, seq: b.u64(off + 40), valOff: b.u16(off + 48), valLen: b.u16(off + 50), flags: b.u8(off + 52))
    }

    /// The value bytes of the item at `off`.
    public func value(at off: Int) -> [UInt8] {
        let len = Int(buffer.u16(off + 50))
        if len == 0 { return [] }
        return buffer.read(Int(buffer.u16(off + 48)), len)
    }

    /// The leaf hash table's buckets (0 is empty).
    public var hashBuckets: [UInt16] {
        (0..<Self.hashNr).map { buffer.u16(Self.hashOffset + $0 * 2) }
    }

    /// The hash bucket where probing for `key` starts.
    public static func hashIndex(_ key: Key) -> Int {
        Int(keyHash(key) % UInt32(hashNr))
    }

    /// Structural checks a reader needs before trusting offsets: counts and value ranges
    /// must lie inside the block. Deeper invariants (AVL balance, order, hash) belong to the
    /// btree's checker.
    public func validateBounds() throws(FormatError) {
        let n = nrItems
        let arrayEnd = Self.itemOffset(n)
        guard arrayEnd <= valuesEnd else {
            throw .invalid(structure: "BTreeBlock", reason: "nr_items \(n) overruns the block")
        }
        for i in 0..<n {
            let off = Self.itemOffset(i)
            let vo = Int(buffer.u16(off + 48)), vl = Int(buffer.u16(off + 50))
            if vl > 0 && (vo < arrayEnd || vo + vl > valuesEnd || vl > Format.btreeMaxValueLength) {
                throw .invalid(structure: "BTreeBlock", reason: "item \(i) value \(vo)+\(vl) outside the value area")
            }
        }
    }
}
