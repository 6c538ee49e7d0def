import ScoutFormat

// Small printf replacements for the print output: no Foundation in this module.

/// Lower-case hex of `v` (`%x`/`%llx`), zero-padded to `width` (`%08x`, `%016llx`).
func hex<T: BinaryInteger>(_ v: T, width: Int = 0) -> String {
    let s = String(v, radix: 16)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

/// Decimal of `v` zero-padded to `width` (`%08u`).
func zeroPadded<T: BinaryInteger>(_ v: T, width: Int) -> String {
    let s = String(v)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

/// `s` right-justified in `width` columns (`%12s`, `%2u`).
func rightJustified(_ s: String, width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// Octal of `v` (`%o`).
func octal<T: BinaryInteger>(_ v: T) -> String { String(v, radix: 8) }

/// A signed view of a stored u64 (`%lld`).
func signed(_ v: UInt64) -> Int64 { Int64(bitPattern: v) }

/// The original's `SK_FMT`.
func keyString(_ k: Key) -> String { k.description }

/// `SRE_FMT`: `hash.ino.id` with the hash as 16 hex digits.
func srchEntryString(_ e: SrchEntry) -> String {
    "\(hex(e.hash, width: 16)).\(e.ino).\(e.id)"
}

/// `SRF_FMT`.
func srchFileString(_ f: SrchFile) -> String {
    "f \(srchEntryString(f.first)) l \(srchEntryString(f.last)) blks \(f.blocks) ents \(f.entries) hei \(f.height) blkno \(f.ref.blkno) seq \(hex(f.ref.seq, width: 16))"
}

/// `BTROOT_F`: `blkno seq height`.
func btreeRootString(_ r: BTreeRoot) -> String {
    "blkno \(r.ref.blkno) seq \(r.ref.seq) height \(r.height)"
}

/// `AL_HEAD_F`.
func allocListHeadString(_ h: AllocListHead) -> String {
    "blkno \(h.ref.blkno) seq \(h.ref.seq) total_nr \(h.totalNr) first_nr \(h.firstNr) flags 0x\(hex(h.flags))"
}

/// `ALCROOT_F`.
func allocRootString(_ a: AllocRoot) -> String {
    "\(btreeRootString(a.root)) total_len \(a.totalLen) flags 0x\(hex(a.flags))"
}

/// `BTR_FMT` of the super block's roots: the seq in 16 hex digits.
func superRootString(_ r: BTreeRoot) -> String {
    "blkno \(r.ref.blkno) seq \(hex(r.ref.seq, width: 16)) height \(r.height)"
}

/// The original's `global_printable_name`: at most 255 bytes, non-printable bytes as `.`.
func printableName(_ bytes: [UInt8]) -> String {
    var s = ""
    s.reserveCapacity(min(bytes.count, Format.nameLength))
    for b in bytes.prefix(Format.nameLength) {
        s.unicodeScalars.append(Unicode.Scalar(b >= 0x20 && b < 0x7f ? b : UInt8(ascii: ".")))
    }
    return s
}

/// A value inside a block, read the way the original's C casts read it: fields past the value's
/// length come from the bytes that follow it in the block (a v1 inode's `proj` is the first
/// bytes of the leaf hash table), and anything past the end of the block reads as zero.
struct BlockValue {
    let buffer: BlockBuffer
    /// Byte offset of the value in the block.
    let base: Int
    /// The item's `val_len`.
    let length: Int

    func u8(_ off: Int) -> UInt8 {
        let at = base + off
        return at >= 0 && at < buffer.size ? buffer.u8(at) : 0
    }

    func u16(_ off: Int) -> UInt16 { UInt16(u8(off)) | UInt16(u8(off + 1)) << 8 }

    func u32(_ off: Int) -> UInt32 { UInt32(u16(off)) | UInt32(u16(off + 2)) << 16 }

    func u64(_ off: Int) -> UInt64 {
        let at = base + off
        if at >= 0 && at + 8 <= buffer.size { return buffer.u64(at) }
        return UInt64(u32(off)) | UInt64(u32(off + 4)) << 32
    }

    func bytes(_ off: Int, _ count: Int) -> [UInt8] {
        count <= 0 ? [] : (0..<count).map { u8(off + $0) }
    }

    func key(_ off: Int) -> Key {
        Key(zone: u8(off + 25), first: u64(off), type: u8(off + 26), second: u64(off + 8), third: u64(off + 16), fourth: u8(off + 24))
    }

    func ref(_ off: Int) -> BlockRef { BlockRef(blkno: u64(off), seq: u64(off + 8)) }

    func btreeRoot(_ off: Int) -> BTreeRoot { BTreeRoot(ref: ref(off), height: u8(off + 16)) }

    func allocListHead(_ off: Int) -> AllocListHead {
        AllocListHead(ref: ref(off), totalNr: u64(off + 16), firstNr: u32(off + 24), flags: u32(off + 28))
    }

    func allocRoot(_ off: Int) -> AllocRoot {
        AllocRoot(totalLen: u64(off), flags: u32(off + 8), root: btreeRoot(off + 16))
    }

    func srchEntry(_ off: Int) -> SrchEntry { SrchEntry(hash: u64(off), ino: u64(off + 8), id: u64(off + 16)) }

    func srchFile(_ off: Int) -> SrchFile {
        SrchFile(first: srchEntry(off), last: srchEntry(off + 24), ref: ref(off + 48), blocks: u64(off + 64), entries: u64(off + 72), height: u8(off + 80))
    }
}
