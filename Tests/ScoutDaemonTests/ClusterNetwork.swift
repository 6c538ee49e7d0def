import Glibc
import ScoutTestSupport

/// A network stack of its own for every member of a test cluster, as separate hosts have:
/// one network namespace per member (`ip netns add`), each linked by a veth pair to a bridge in
/// the root namespace, on a private /24 `10.A.B.0` (members at `.1`, `.2`, ..., the bridge,
/// where the test and the fencing agent live, at `.254`).
///
/// A member's daemon starts in its namespace with `nsenter --net=` (not `ip netns exec`, which
/// also enters a mount namespace of its own, where the FUSE mount would be invisible to the
/// test); the fencing agent stays in the root namespace and fences by pid through the mount
/// registry. Cutting a member's link (`cut`) partitions it from every other member and from
/// the root namespace, while its control socket (a path) still answers the test.
///
/// The subnet is chosen at random and claimed by creating the bridge, named after it
/// (`sfsAABBb`, A and B in hex): creating a link whose name exists fails, so test processes
/// running at the same time never share a subnet. Subnets any route of the host already covers
/// (the default route aside) are skipped. Every namespace and link made is recorded in
/// `CLUSTER/netns` as it is made, and `tearDown(cluster:)` removes what the record lists, so a
/// test that fails early leaves nothing behind.
struct ClusterNetwork {
    /// `10.A.B`
    let prefix: String
    /// The hex tag `AABB` of the subnet, part of every name.
    let tag: String
    let members: Int

    var bridge: String { "sfs\(tag)b" }
    /// The root namespace's end of a member's veth pair (the member's end is its `eth0`).
    func veth(_ slot: Int) -> String { "sfs\(tag)v\(slot)" }
    func namespace(_ slot: Int) -> String { "scoutfs-\(tag)-\(slot)" }
    func address(_ slot: Int) -> String { "\(prefix).\(slot + 1)" }
    var rootAddress: String { "\(prefix).254" }

    /// The command prefix that runs a command in a member's network namespace (and only that).
    func enter(_ slot: Int) -> String { "nsenter --net=/run/netns/\(namespace(slot)) " }

    /// Cuts a member off the bridge: its link loses carrier, every packet to or from it is
    /// dropped (no reset reaches anybody), as when a host's cable is pulled.
    func cut(_ slot: Int) throws { try Self.ip("link set \(veth(slot)) down") }

    /// Joins a member to the bridge again.
    func heal(_ slot: Int) throws { try Self.ip("link set \(veth(slot)) up") }

    /// Whether the root namespace can create a network namespace and enter it with `nsenter`;
    /// nil when it can, else why not.
    static let unusableReason: String? = {
        guard getuid() == 0 else { return "not root" }
        let name = "scoutfs-probe-\(getpid())"
        let (rc, out) = MountEnv.sh("ip netns add \(name) && nsenter --net=/run/netns/\(name) ip link set lo up")
        MountEnv.sh("ip netns del \(name)")
        return rc == 0 ? nil : "cannot create and enter a network namespace (ip netns add, nsenter): \(out)"
    }()

    static var usable: Bool { unusableReason == nil }

    /// Makes the namespaces, the bridge and the links of `members` members of the cluster in
    /// directory `cluster`.
    static func make(cluster: String, members: Int) throws -> ClusterNetwork {
        if let why = unusableReason { throw Failure(message: why) }
        for _ in 0..<64 {
            let a = Int.random(in: 16...254), b = Int.random(in: 0...255)
            let prefix = "10.\(a).\(b)"
            // a subnet the host already routes somewhere (other than by default) is taken
            let (_, routes) = MountEnv.sh("ip -4 route show match \(prefix).0/24")
            if routes.split(separator: "\n").contains(where: { !$0.hasPrefix("default") }) { continue }
            let hex = String(a * 256 + b, radix: 16)
            let net = ClusterNetwork(prefix: prefix, tag: String(repeating: "0", count: 4 - hex.count) + hex, members: members)
            // the bridge's name claims the subnet: another process that chose it fails here
            let (rc, out) = MountEnv.sh("ip link add \(net.bridge) type bridge")
            if rc != 0 {
                if out.contains("File exists") { continue }
                throw Failure(message: "ip link add \(net.bridge) type bridge: \(out)")
            }
            record(cluster, "link \(net.bridge)")
            try net.build(cluster: cluster)
            return net
        }
        throw Failure(message: "no free 10.x.y.0/24 subnet found in 64 tries")
    }

    private func build(cluster: String) throws {
        try Self.ip("addr add \(rootAddress)/24 dev \(bridge)")
        try Self.ip("link set \(bridge) up")
        for slot in 0..<members {
            let ns = namespace(slot)
            try Self.ip("netns add \(ns)")
            Self.record(cluster, "netns \(ns)")
            try Self.ip("link add \(veth(slot)) type veth peer name eth0 netns \(ns)")
            Self.record(cluster, "link \(veth(slot))")
            try Self.ip("link set \(veth(slot)) master \(bridge) up")
            try Self.ip("-n \(ns) addr add \(address(slot))/24 dev eth0")
            try Self.ip("-n \(ns) link set eth0 up")
            // a member reaches its own address (its own server) through its loopback
            try Self.ip("-n \(ns) link set lo up")
        }
    }

    /// Removes every namespace and link recorded for the cluster in `cluster` (each is
    /// removed once; a missing one is skipped).
    static func tearDown(cluster: String) {
        guard let text = try? TempDir.readText(cluster + "/netns") else { return }
        let lines = text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        // namespaces first (their processes may still hold them until they exit), then the
        // links left in the root namespace: the veths, the bridge last
        for words in lines where words.count == 2 && words[0] == "netns" { MountEnv.sh("ip netns del \(words[1])") }
        for words in lines.reversed() where words.count == 2 && words[0] == "link" {
            MountEnv.sh("ip link show \(words[1]) >/dev/null 2>&1 && ip link del \(words[1])")
        }
        unlink(cluster + "/netns")
    }

    private static func record(_ cluster: String, _ line: String) {
        MountEnv.sh("echo '\(line)' >> \(cluster)/netns")
    }

    private static func ip(_ args: String) throws {
        let (rc, out) = MountEnv.sh("ip \(args)")
        guard rc == 0 else { throw Failure(message: "ip \(args): \(out)") }
    }
}
