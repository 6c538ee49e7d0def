/// Constants of the original's format version 1 and 2 (`kmod/src/format.h`).
public enum Format {
    /// Oldest format version read.
    public static let versionMin: UInt64 = 1
    /// Newest format version, written by default.
    public static let versionMax: UInt64 = 2
    /// The first format version with `.indx.` xattrs (`SCOUTFS_FORMAT_VERSION_FEAT_INDX_TAG`).
    public static let versionIndxTag: UInt64 = 2
    /// The first format version with quota rules (`SCOUTFS_FORMAT_VERSION_FEAT_QUOTA`).
    public static let versionQuota: UInt64 = 2

    public static let smallShift = 12
    /// 4 KiB: super, quorum blocks and file data.
    public static let smallBlockSize = 1 << smallShift
    public static let largeShift = 16
    /// 64 KiB: btree, bloom, srch and alloc list blocks.
    public static let largeBlockSize = 1 << largeShift
    /// Small blocks in one large block.
    public static let smallPerLargeShift = largeShift - smallShift

    /// The super block's small-block number on both devices (byte 64 KiB).
    public static let superBlkno: UInt64 = 16
    /// The first quorum block (small blocks).
    public static let quorumBlkno: UInt64 = 17
    /// Quorum blocks, one a slot.
    public static let quorumBlocks: UInt64 = 15
    /// First large block of the meta device that may be allocated.
    public static let metaDevStartBlkno: UInt64 = (quorumBlkno + quorumBlocks) >> UInt64(smallPerLargeShift)
    /// First small block of the data device that may be allocated.
    public static let dataDevStartBlkno: UInt64 = (256 * 1024) >> UInt64(smallShift)

    public static let uuidBytes = 16
    public static let quorumMaxSlots = 15
    public static let rootIno: UInt64 = 1
    /// statfs f_type ("SCOU").
    public static let superMagic: UInt32 = 0x554f_4353

    /// Super flag: this is the metadata device.
    public static let flagIsMetaBdev: UInt64 = 0x01

    public static let btreeMaxValueLength = 896
    public static let btreeMaxHeight = 20
    public static let btreeValueAlign = 8
    public static let itemFlagDeletion: UInt8 = 1

    public static let allocFlagLow: UInt32 = 1
    public static let nameLength = 255
    public static let symlinkMaxSize = 4096
    public static let direntFirstPos: UInt64 = 2
    /// The last readdir position a dirent can have (so the position after it still fits).
    public static let direntLastPos: UInt64 = .max - 1
    public static let xattrMaxNameLength = 255
    public static let xattrMaxValueLength = 65535
    public static let lockInodeGroupNr: UInt64 = 1024

    public static let dataAllocMaxZones = 1024
    public static let dataAllocZoneLE64s = 16

    public static let forestBloomNrs = 3
    /// Bits in one bloom block: the u64 words after the 40-byte header.
    public static let forestBloomBits = ((largeBlockSize - BloomBlockHeader.encodedSize) / 8) * 64
    public static let forestBloomFuncBits = largeShift + 3

    public static let srchLogBlockLimit = 1024 * 1024 / largeBlockSize
    public static let srchCompactNr = 4
    /// Sorted files are compacted together when their block counts' bit lengths divided by
    /// this match (`SCOUTFS_SRCH_COMPACT_ORDER`).
    public static let srchCompactOrder = 2
    public static let srchEntryMaxBytes = 2 + 8 * 3

    /// Volume option bit: data_alloc_zone_blocks is set.
    public static let volOptDataAllocZoneBlocksBit: UInt64 = 1

    /// Quorum timing (milliseconds).
    public static let quorumElectMinMs = 250
    public static let quorumElectVarMs = 100
    public static let quorumHeartbeatIntervalMs = 100
    public static let quorumMinHeartbeatTimeoutMs = 2000
    public static let quorumDefaultHeartbeatTimeoutMs = 10000
    public static let quorumMaxHeartbeatTimeoutMs = 60000
    public static let quorumFenceTimeoutMs = 15000
}

/// Block header magic values.
public enum BlockMagic: UInt32, Sendable, CaseIterable {
    case superBlock = 0x103c_428b
    case btree = 0xe597_f96d
    case bloom = 0x3199_5604
    case srchBlock = 0x897e_4a7d
    case srchParent = 0xb23a_2a05
    case allocList = 0x8a93_ac83
    case quorum = 0xbc31_0868
}

/// Key zones, in sort order.
public enum KeyZone {
    public static let inodeIndex: UInt8 = 4
    public static let orphan: UInt8 = 8
    public static let quota: UInt8 = 10
    public static let xattrTotl: UInt8 = 12
    public static let xattrIndx: UInt8 = 14
    public static let fs: UInt8 = 16
    public static let lock: UInt8 = 20
    public static let logTrees: UInt8 = 24
    public static let mountedClient: UInt8 = 28
    public static let srch: UInt8 = 32
    public static let freeExtentBlkno: UInt8 = 36
    public static let freeExtentOrder: UInt8 = 40
    public static let logMergeStatus: UInt8 = 44
    public static let logMergeRange: UInt8 = 48
    public static let logMergeRequest: UInt8 = 52
    public static let logMergeComplete: UInt8 = 56
    public static let logMergeFreeing: UInt8 = 60
}

/// Key types within their zones.
public enum KeyType {
    public static let inodeIndexMetaSeq: UInt8 = 4
    public static let inodeIndexDataSeq: UInt8 = 8
    public static let orphan: UInt8 = 4
    public static let quotaRule: UInt8 = 4
    public static let inode: UInt8 = 4
    public static let xattr: UInt8 = 8
    public static let dirent: UInt8 = 12
    public static let readdir: UInt8 = 16
    public static let linkBackref: UInt8 = 20
    public static let symlink: UInt8 = 24
    public static let dataExtent: UInt8 = 28
    public static let rename: UInt8 = 4
    public static let srchLog: UInt8 = 4
    public static let srchBlocks: UInt8 = 8
    public static let srchPending: UInt8 = 12
    public static let srchBusy: UInt8 = 16
}
