import ScoutBTree
public import ScoutBlockIO
import ScoutFormat

/// Reads the volume's list of mounted clients straight from the device.
public enum MountedClients {
    /// Whether the committed super block still lists `rid` as mounted. A client whose server
    /// died after processing its farewell finds its item gone here (lesson 16).
    public static func contains(rid: UInt64, device: MetaDevice) throws(FSError) -> Bool {
        try FSError.retryingStale("reading mounted clients") { () throws(FSError) in try containsOnce(rid: rid, device: device) }
    }

    private static func containsOnce(rid: UInt64, device: MetaDevice) throws(FSError) -> Bool {
        let sb: SuperBlock
        do {
            sb = try MetaDevice.readSuper(from: device.device)
        } catch {
            throw FSError(FSError.EIO, "reading the super block: \(error)")
        }
        do {
            return try BTree(store: ReadOnlyStore(device: device)).lookup(sb.mountedClients, Key(zone: KeyZone.mountedClient, first: rid)) != nil
        } catch {
            throw .btree(error)
        }
    }
}
