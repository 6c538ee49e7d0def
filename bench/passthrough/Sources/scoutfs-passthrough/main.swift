import CPassthrough
import Glibc
import ScoutFUSE

// scoutfs-passthrough BACKING MNT [--threads N] [--max-threads N] [--timeout SECONDS] [--readdirplus off|always|adaptive]
//                     [--killpriv] [--direct-io]
// Mounts BACKING at MNT through ScoutFUSE (plain fuse, same INIT choices as scoutfs) and serves until unmounted or
// sent SIGINT/SIGTERM (which unmounts lazily).

run()
