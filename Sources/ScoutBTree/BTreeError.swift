public import ScoutFormat

/// Why a btree operation failed.
public enum BTreeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The key is not in the tree (update, delete).
    case notFound
    /// The key is already in the tree (insert).
    case exists
    /// The value is longer than `Format.btreeMaxValueLength` (896) bytes.
    case valueTooLarge
    /// The block store failed to read, dirty or free a block.
    case store(BlockStoreError)
    /// A block's contents break the btree's rules; the string names the blkno and the rule.
    case corrupt(String)
    /// A subtree's root would have to split or join (see `BTree.subtree`): nothing changed.
    case range

    public var description: String {
        switch self {
        case .notFound: return "btree item not found"
        case .exists: return "btree item exists"
        case .valueTooLarge: return "btree value longer than \(Format.btreeMaxValueLength) bytes"
        case .store(let e): return e.description
        case .corrupt(let s): return "btree corrupt: \(s)"
        case .range: return "btree subtree root would split or join"
        }
    }
}

/// One item copied out of a btree leaf.
public struct BTreeItem: Equatable, Sendable {
    public var key: Key
    public var seq: UInt64
    public var flags: UInt8
    public var value: [UInt8]

    public init(key: Key, seq: UInt64 = 0, flags: UInt8 = 0, value: [UInt8]) {
        self.key = key
        self.seq = seq
        self.flags = flags
        self.value = value
    }
}
