import Glibc
import ScoutFS

extension Mount {
    /// Runs the orphan scan every `delayMs` (80 to 120 % of it, at random, as the original
    /// spreads the mounts' scans): each scan tries to delete the orphans of the stable fs
    /// root that no mount holds any more (`Volume.scanOrphans`).
    static func startOrphanScan(_ vol: Volume, stop: CleanFlag, delayMs: Int) {
        ClientLink.onThread {
            while !stop.isSet {
                let wait = Double(delayMs) * Double.random(in: 0.8...1.2) / 1000
                let end = monotonicSeconds() + wait
                while !stop.isSet, monotonicSeconds() < end {
                    usleep(UInt32(min(250_000, max(1_000, (end - monotonicSeconds()) * 1_000_000))))
                }
                if stop.isSet { break }
                vol.scanOrphans(stopping: { stop.isSet })
            }
        }
    }
}
