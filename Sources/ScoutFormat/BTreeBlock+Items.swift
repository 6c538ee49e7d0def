// In-block item operations of a btree block, laid out exactly as the original does.
//
// Design note (the layout rules we keep):
//
// - `mid_free_len` is the free gap between the end of the dense item array and the lowest
//   value. Creating an item takes 56 bytes from its front and `round_up(val_len, 8)` bytes from
//   its back. Values freed by deletion or replaced by an update are *not* returned to the gap;
//   they become fragments that only `compactValues()` reclaims, by packing all values against
//   the end of the value area in their existing offset order.
// - `total_item_bytes` is the sum over items of `56 + round_up(val_len, 8)`.
// - Deleting an item moves the last item of the array into its slot (links, hash bucket and
//   all), so the array stays dense.
// - Leaves index items by a 1512-bucket linear-probing hash of the 32 encoded key bytes
//   (FNV-1a 32). Deletion empties the bucket and re-inserts every populated bucket that
//   follows it up to the next empty one.
//
// The one place where we reproduce a *different* layout is the mkfs builder at the end of this
// file, which mirrors the original utilities: it links sorted items into a degenerate tree (each
// new item becomes the root with the previous root as its left child, heights shifted as the
// utilities do), does not align value lengths and never wraps hash probes.

extension BTreeBlock {
    /// Bytes a value of `len` takes in the value area (8-byte aligned).
    @inlinable public static func valueBytes(_ len: Int) -> Int { (len + 7) & ~7 }
    /// Bytes an item with a value of `len` takes in the block.
    @inlinable public static func itemBytes(valueLength len: Int) -> Int { itemSize + valueBytes(len) }
    /// Space for items and values in a block of `level`: 65488 in parents, 62464 in leaves.
    @inlinable public static func usableBytes(level: UInt8) -> Int {
        Format.largeBlockSize - headerSize - (level == 0 ? hashBytes : 0)
    }
    /// Blocks below this many `total_item_bytes` are refilled from a sibling (a quarter of the
    /// space after the header, as the original's `join_low_watermark`).
    public static let joinLowWatermark = (Format.largeBlockSize - headerSize) / 4

    // MARK: field access by item offset

    /// The key of the item at `off`, read straight from the block.
    @inlinable
    public func key(at off: Int) -> Key {
        let b = buffer
        return Key(
            zone: b.u8(off + 33), first: b.u64(off + 8), type: b.u8(off + 34),
            second: b.u64(off + 16), third: b.u64(off + 24), fourth: b.u8(off + 32))
    }
    /// The seq of the item at `off`.
    @inlinable public func seq(at off: Int) -> UInt64 { buffer.u64(off + 40) }
    /// The flags of the item at `off`.
    @inlinable public func flags(at off: Int) -> UInt8 { buffer.u8(off + 52) }
    /// The value length of the item at `off`.
    @inlinable public func valueLength(at off: Int) -> Int { Int(buffer.u16(off + 50)) }
    /// The absolute value offset of the item at `off` (0 for an empty value).
    @inlinable public func valueOffset(at off: Int) -> Int { Int(buffer.u16(off + 48)) }
    /// Bytes the item at `off` accounts for in `total_item_bytes`.
    @inlinable public func itemBytes(at off: Int) -> Int { Self.itemBytes(valueLength: valueLength(at: off)) }

    /// Calls `body` with the value bytes of the item at `off` (no copy).
    @inlinable
    public func withValue<R, E: Error>(at off: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let len = valueLength(at: off)
        if len == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let vo = valueOffset(at: off)
        return try body(UnsafeRawBufferPointer(rebasing: buffer.bytes[vo..<(vo + len)]))
    }

    /// Sets the seq of the item at `off`.
    @inlinable public func setSeq(at off: Int, _ seq: UInt64) { buffer.setU64(off + 40, seq) }
    /// Sets the flags of the item at `off`.
    @inlinable public func setFlags(at off: Int, _ flags: UInt8) { buffer.setU8(off + 52, flags) }

    /// The child reference stored as the value of a parent item.
    @inlinable
    public func childRef(at off: Int) -> BlockRef {
        let vo = valueOffset(at: off)
        return BlockRef(blkno: buffer.u64(vo), seq: buffer.u64(vo + 8))
    }

    /// Overwrites the child reference stored as the value of a parent item.
    @inlinable
    public func setChildRef(at off: Int, _ ref: BlockRef) {
        let vo = valueOffset(at: off)
        buffer.setU64(vo, ref.blkno)
        buffer.setU64(vo + 8, ref.seq)
    }

    /// Replaces the key of the item at `off`. The caller keeps the order (parent blocks only:
    /// leaves would need their hash bucket moved).
    @inlinable
    public func setKey(at off: Int, _ key: Key) {
        Self.storeKey(buffer, off + 8, key)
    }

    @inlinable
    static func storeKey(_ b: BlockBuffer, _ at: Int, _ key: Key) {
        b.setU64(at, key.first)
        b.setU64(at + 8, key.second)
        b.setU64(at + 16, key.third)
        b.setU8(at + 24, key.fourth)
        b.setU8(at + 25, key.zone)
        b.setU8(at + 26, key.type)
        b.zero(at + 27, 5)
    }

    /// Compares `key` with the key of the item at `off` (-1, 0, 1) without decoding it.
    @inlinable
    public func compare(_ key: Key, itemAt off: Int) -> Int {
        let b = buffer
        let z = b.u8(off + 33)
        if key.zone != z { return key.zone < z ? -1 : 1 }
        let f = b.u64(off + 8)
        if key.first != f { return key.first < f ? -1 : 1 }
        let t = b.u8(off + 34)
        if key.type != t { return key.type < t ? -1 : 1 }
        let s = b.u64(off + 16)
        if key.second != s { return key.second < s ? -1 : 1 }
        let th = b.u64(off + 24)
        if key.third != th { return key.third < th ? -1 : 1 }
        let fo = b.u8(off + 32)
        if key.fourth != fo { return key.fourth < fo ? -1 : 1 }
        return 0
    }

    /// Offset just past the item array: the start of the middle free space.
    @inlinable public var midFreeOffset: Int { Self.itemOffset(nrItems) }

    /// Whether the middle free space holds a new item with a value of `valueLength` bytes.
    @inlinable
    public func hasRoom(forValueLength valueLength: Int) -> Bool {
        midFreeLen >= Self.itemBytes(valueLength: valueLength)
    }

    /// `total_item_bytes` as a whole percentage of the space after the header.
    @inlinable
    public var fullPercent: Int { totalItemBytes * 100 / (Format.largeBlockSize - Self.headerSize) }

    // MARK: leaf hash table

    /// FNV-1a 32 of the key's 32 encoded bytes, without encoding it into an array.
    @inlinable
    public static func keyHash(_ key: Key) -> UInt32 {
        var h: UInt32 = 0x811c_9dc5
        @inline(__always) func mix(_ byte: UInt8) {
            h ^= UInt32(byte)
            h &*= 0x0100_0193
        }
        @inline(__always) func mix64(_ v: UInt64) {
            var v = v
            for _ in 0..<8 {
                mix(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        mix64(key.first)
        mix64(key.second)
        mix64(key.third)
        mix(key.fourth)
        mix(key.zone)
        mix(key.type)
        for _ in 0..<5 { mix(0) }
        return h
    }

    @inlinable static func bucketOffset(_ i: Int) -> Int { hashOffset + i * 2 }

    @inlinable
    func bucket(_ i: Int) -> Int { Int(buffer.u16(Self.bucketOffset(i))) }

    @inlinable
    func setBucket(_ i: Int, _ off: Int) { buffer.setU16(Self.bucketOffset(i), UInt16(truncatingIfNeeded: off)) }

    /// Finds a leaf item by key through the hash table; 0 when absent.
    @inlinable
    public func hashSearch(_ key: Key) -> Int {
        var i = Int(Self.keyHash(key) % UInt32(Self.hashNr))
        for _ in 0..<Self.hashNr {
            let off = bucket(i)
            if off == 0 { return 0 }
            if compare(key, itemAt: off) == 0 { return off }
            i += 1
            if i == Self.hashNr { i = 0 }
        }
        return 0
    }

    func hashInsert(_ key: Key, _ off: Int) {
        var i = Int(Self.keyHash(key) % UInt32(Self.hashNr))
        for _ in 0..<Self.hashNr {
            if bucket(i) == 0 {
                setBucket(i, off)
                return
            }
            i += 1
            if i == Self.hashNr { i = 0 }
        }
        preconditionFailure("btree leaf hash table full")
    }

    func hashDelete(_ delKey: Key, _ delOff: Int) {
        var i = Int(Self.keyHash(delKey) % UInt32(Self.hashNr))
        var found = false
        for _ in 0..<Self.hashNr {
            let off = bucket(i)
            precondition(off != 0, "btree leaf hash lost an item")
            if off == delOff {
                setBucket(i, 0)
                found = true
                break
            }
            i += 1
            if i == Self.hashNr { i = 0 }
        }
        precondition(found, "btree leaf hash lost an item")
        while true {
            i += 1
            if i == Self.hashNr { i = 0 }
            let off = bucket(i)
            if off == 0 { break }
            setBucket(i, 0)
            hashInsert(key(at: off), off)
        }
    }

    func hashChange(_ key: Key, to: Int, from: Int) {
        var i = Int(Self.keyHash(key) % UInt32(Self.hashNr))
        for _ in 0..<Self.hashNr {
            let off = bucket(i)
            precondition(off != 0, "btree leaf hash lost an item")
            if off == from {
                setBucket(i, to)
                return
            }
            i += 1
            if i == Self.hashNr { i = 0 }
        }
    }

    // MARK: lookup

    /// Finds the item with `key`: through the hash table in leaves, the AVL tree in parents.
    /// Returns its offset, 0 when absent.
    @inlinable
    public func find(_ key: Key) -> Int {
        level == 0 ? hashSearch(key) : search(key).found
    }

    // MARK: mutation

    /// Makes this an empty block of `level`: zeroes everything after the block header and sets
    /// `level` and `mid_free_len` (the header itself is the caller's).
    public func initialize(level: UInt8) {
        buffer.zero(Self.avlRootOffset, Format.largeBlockSize - Self.avlRootOffset)
        self.level = level
        midFreeLen = Self.usableBytes(level: level)
    }

    /// Takes `round_up(len, 8)` bytes from the back of the middle free space for a value and
    /// copies it in; returns its offset (0 for an empty value).
    func insertValue(_ value: UnsafeRawBufferPointer) -> Int {
        let len = value.count
        if len == 0 { return 0 }
        let vb = Self.valueBytes(len)
        precondition(midFreeLen >= vb, "btree block value overflow")
        let vo = midFreeOffset + midFreeLen - vb
        midFreeLen -= vb
        UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[vo..<(vo + len)]).copyMemory(from: value)
        return vo
    }

    /// Creates an item, linking it below `parent` on the side of `cmp` (as found by
    /// `search(_:)`). The caller has checked `hasRoom(forValueLength:)` and that the key is
    /// absent. Returns the new item's offset.
    @discardableResult
    public func createItem(
        key: Key, seq: UInt64, flags: UInt8, value: UnsafeRawBufferPointer, parent: Int, cmp: Int
    ) -> Int {
        precondition(hasRoom(forValueLength: value.count), "btree block item overflow")
        precondition(value.count <= Format.btreeMaxValueLength, "btree value too large")
        midFreeLen -= Self.itemSize
        nrItems += 1
        let off = Self.itemOffset(nrItems - 1)
        Self.storeKey(buffer, off + 8, key)
        buffer.setU64(off + 40, seq)
        buffer.setU8(off + 52, flags)
        avlInsert(off, parent: parent, cmp: cmp)
        if level == 0 { hashInsert(key, off) }
        buffer.setU16(off + 48, UInt16(truncatingIfNeeded: insertValue(value)))
        buffer.setU16(off + 50, UInt16(truncatingIfNeeded: value.count))
        buffer.zero(off + 53, 3)
        totalItemBytes += itemBytes(at: off)
        return off
    }

    /// Inserts an item with a key not yet in the block. The caller has checked
    /// `hasRoom(forValueLength:)`. Returns the new item's offset, or nil if the key exists.
    @discardableResult
    public func insert(key: Key, seq: UInt64 = 0, flags: UInt8 = 0, value: UnsafeRawBufferPointer) -> Int? {
        let s = search(key)
        if s.found != 0 { return nil }
        return createItem(key: key, seq: seq, flags: flags, value: value, parent: s.parent, cmp: s.cmp)
    }

    /// Inserts an item (array convenience).
    @discardableResult
    public func insert(key: Key, seq: UInt64 = 0, flags: UInt8 = 0, value: [UInt8]) -> Int? {
        value.withUnsafeBytes { insert(key: key, seq: seq, flags: flags, value: $0) }
    }

    /// Replaces the value of the item at `off` with a value placed in the middle free space; the
    /// old value's bytes become a fragment. The caller has checked that
    /// `midFreeLen >= valueBytes(value.count)`.
    public func updateValue(at off: Int, _ value: UnsafeRawBufferPointer) {
        precondition(value.count <= Format.btreeMaxValueLength, "btree value too large")
        totalItemBytes += Self.valueBytes(value.count) - Self.valueBytes(valueLength(at: off))
        buffer.setU16(off + 48, UInt16(truncatingIfNeeded: insertValue(value)))
        buffer.setU16(off + 50, UInt16(truncatingIfNeeded: value.count))
    }

    /// Replaces the value of the item at `off` (array convenience).
    public func updateValue(at off: Int, _ value: [UInt8]) {
        value.withUnsafeBytes { updateValue(at: off, $0) }
    }

    /// Deletes the item at `off`. The last item of the array moves into its slot; if `tracking`
    /// is that last item's offset, the returned value is its new offset, otherwise `tracking`.
    @discardableResult
    public func deleteItem(at off: Int, tracking: Int = 0) -> Int {
        let end = Self.itemOffset(nrItems - 1)
        avlDelete(off)
        if level == 0 { hashDelete(key(at: off), off) }
        nrItems -= 1
        midFreeLen += Self.itemSize
        totalItemBytes -= itemBytes(at: off)
        var tracked = tracking
        if end != off {
            // key, seq, val_off, val_len, flags: bytes 8..<53
            let base = buffer.bytes.baseAddress!
            (base + off + 8).copyMemory(from: base + end + 8, byteCount: 45)
            if level == 0 { hashChange(key(at: end), to: off, from: end) }
            avlRelocate(to: off, from: end)
            if tracking == end { tracked = off }
        }
        return tracked
    }

    /// Packs every value against the end of the value area, keeping their order, so that all
    /// fragmented free space joins the middle free space.
    public func compactValues() {
        let nr = nrItems
        var to = valuesEnd
        withUnsafeTemporaryAllocation(of: (UInt16, UInt16).self, capacity: Swift.max(nr, 1)) { sorted in
            var n = 0
            for i in 0..<nr {
                let off = Self.itemOffset(i)
                if valueLength(at: off) != 0 {
                    sorted[n] = (UInt16(valueOffset(at: off)), UInt16(off))
                    n += 1
                }
            }
            var s = UnsafeMutableBufferPointer(rebasing: sorted[0..<n])
            s.sort { $0.0 < $1.0 }
            let base = buffer.bytes.baseAddress!
            for j in stride(from: n - 1, through: 0, by: -1) {
                let off = Int(s[j].1)
                let vb = Self.valueBytes(valueLength(at: off))
                to -= vb
                let from = Int(s[j].0)
                if from != to {
                    (base + to).copyMemory(from: base + from, byteCount: vb)
                    buffer.setU16(off + 48, UInt16(to))
                }
            }
        }
        midFreeLen = to - midFreeOffset
    }

    // MARK: the mkfs builder

    /// Starts an empty leaf the way the original's mkfs does (`btree_init_root_single`): zeroes
    /// everything after the block header and sets level 0 and `mid_free_len`.
    public func initializeMkfsLeaf() {
        initialize(level: 0)
    }

    /// Appends an item with a key greater than every key in the block, exactly as the original
    /// mkfs utilities do: the new item becomes the AVL root with the previous root as its left
    /// child (the previous root's height is incremented and the new item takes its old height),
    /// the value is stored unaligned at the back of the middle free space, the item seq is
    /// `seq` (mkfs uses 1) and the hash probe does not wrap at the end of the table.
    public func appendMkfsItem(key: Key, value: [UInt8], seq: UInt64 = 1) {
        let nr = nrItems
        let off = Self.itemOffset(nr)
        if nr > 0 {
            let prev = Self.itemOffset(nr - 1)
            precondition(compare(key, itemAt: prev) > 0, "mkfs items must be appended in key order")
            let ph = buffer.u8(prev + Self.fHeight)
            buffer.setU8(off + Self.fHeight, ph)
            buffer.setU8(prev + Self.fHeight, ph &+ 1)
            setLink(off, Self.fLeft, prev)
            setLink(prev, Self.fParent, off)
        }
        setRootItem(off)
        nrItems = nr + 1
        midFreeLen -= Self.itemSize
        totalItemBytes += Self.itemSize
        Self.storeKey(buffer, off + 8, key)
        buffer.setU64(off + 40, seq)
        buffer.setU8(off + 52, 0)
        var i = Int(Self.keyHash(key) % UInt32(Self.hashNr))
        while i < Self.hashNr {
            if bucket(i) == 0 {
                setBucket(i, off)
                break
            }
            i += 1
        }
        if value.isEmpty { return }
        midFreeLen -= value.count
        totalItemBytes += value.count
        let vo = midFreeOffset + midFreeLen
        buffer.write(value, at: vo)
        buffer.setU16(off + 48, UInt16(vo))
        buffer.setU16(off + 50, UInt16(value.count))
    }

    /// Builds a leaf the way the original mkfs does: `items` must be sorted by key. Writes
    /// bytes 32..<65536 of `buffer`; the caller writes the block header and seals the block.
    public static func buildMkfsLeaf(into buffer: BlockBuffer, items: [(key: Key, value: [UInt8])], seq: UInt64 = 1) {
        let b = BTreeBlock(buffer)
        b.initializeMkfsLeaf()
        for item in items {
            b.appendMkfsItem(key: item.key, value: item.value, seq: seq)
        }
    }
}
