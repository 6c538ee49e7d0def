#!/usr/bin/env bash
# The main job: a three-node cluster on device files under var/. Three quorum members on
# 127.0.0.1-3 mount the same volume with `mount -t scoutfs`, elect a leader whose server the
# others use, share files with POSIX consistency, survive a kill -9 of the leader (the
# fencing agent fences it, a survivor takes over) and take the killed node back as a follower.
# Each node opens the shared image files through loop devices of its own, as separate hosts on
# a shared LUN would (each with its own page cache); the daemons use O_DIRECT, so every node
# reads what the others wrote.
# Then an archive cycle, as an HSM agent runs it: find the changed files through the data_seq
# index, copy them out, release their blocks, and stage one back while a reader on another
# node waits for it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug/scoutfs
[ -x "$bin" ] || swift build
install -m 0755 "$bin" /usr/local/sbin/scoutfs
install -m 0755 scripts/mount.scoutfs /sbin/mount.scoutfs
install -m 0755 scripts/scoutfs-fence-local /usr/local/sbin/scoutfs-fence-local
var=$PWD/var
meta=$var/meta.img
data=$var/data.img
mkdir -p "$var"
for n in 0 1 2; do mkdir -p "$var/mnt$n"; umount "$var/mnt$n" 2>/dev/null || true; done
pkill -f "scoutfs fenced --config $var/" 2>/dev/null || true
detach_loops() {  # the loop devices an earlier run left over these images
    for img in "$meta" "$data"; do
        [ -e "$img" ] && losetup -j "$img" | cut -d: -f1 | xargs -r -n1 losetup -d 2>/dev/null || true
    done
}
detach_loops
rm -f "$meta" "$data" "$var"/*.log
truncate -s 8G "$meta"
truncate -s 8G "$data"

cleanup() {
    for n in 0 1 2; do umount "$var/mnt$n" 2>/dev/null & done
    sleep 5
    pkill -f "scoutfs fenced --config $var/" 2>/dev/null || true
    detach_loops
}
trap cleanup EXIT

# each node's own view of the shared devices
declare -a node_meta node_data
for n in 0 1 2; do
    node_meta[$n]=$(losetup -f --show "$meta")
    node_data[$n]=$(losetup -f --show "$data")
done

mount_node() {  # slot
    # the daemon logs to /run/scoutfs/log/<rid>.log and syslog; keep a copy per node here too.
    # SCOUTFS_LOCAL_FENCE=0: the nodes stand for separate hosts, so the agent fences a killed
    # one (a server would otherwise fence a dead daemon of its own host itself)
    SCOUTFS_LOCAL_FENCE=0 SCOUTFS_LOG=info SCOUTFS_LOG_STDERR=1 mount -t scoutfs \
        -o "metadev_path=${node_meta[$1]},quorum_slot_nr=$1,quorum_heartbeat_timeout_ms=2000" "${node_data[$1]}" "$var/mnt$1" \
        2>>"$var/node$1.log"
}
status() { scoutfs quorum-status -p "$var/mnt$1" 2>/dev/null || true; }
role() { status "$1" | sed -n 's/^role [0-9]* (\(.*\))/\1/p'; }
term() { status "$1" | sed -n 's/^term //p'; }
show_roles() {
    for n in "$@"; do echo "  node $n (127.0.0.$((n + 1))): $(role "$n"), term $(term "$n")"; done
}
leader_of() {
    for n in "$@"; do
        if [ "$(role "$n")" = leader ]; then echo "$n"; return; fi
    done
    echo none
}

echo "== scoutfs mkfs: three quorum slots on 127.0.0.1-3"
scoutfs mkfs -A -f -Q 0,127.0.0.1,42000 -Q 1,127.0.0.2,42000 -Q 2,127.0.0.3,42000 "$meta" "$data"
echo
echo "== the fencing agent: scoutfs fenced, running scoutfs-fence-local"
cat > "$var/fenced.conf" <<EOF
SCOUTFS_FENCED_DELAY=0.5
SCOUTFS_FENCED_RUN=/usr/local/sbin/scoutfs-fence-local
SCOUTFS_FENCED_RUN_ARGS=""
EOF
scoutfs fenced --config "$var/fenced.conf" >>"$var/fenced.log" 2>&1 &
echo
echo "== mount -t scoutfs on three nodes at once (a majority elects the leader)"
for n in 0 1 2; do echo "  node $n: metadev_path=${node_meta[$n]}, data device ${node_data[$n]}"; done
pids=""
for n in 0 1 2; do mount_node "$n" & pids="$pids $!"; done
for p in $pids; do wait "$p"; done
for n in 0 1 2; do
    echo "  node $n: $(awk -v m="$var/mnt$n" '$2 == m { print $3 " on " $2 " (block device " $1 ")" }' /proc/mounts)"
done
show_roles 0 1 2
first=$(leader_of 0 1 2)
echo "  the nodes voted over UDP: node $first won a majority for term $(term "$first") and runs the server the others use"
echo
echo "== files in on node 0, read on nodes 1 and 2 (cluster locks keep them coherent)"
mkdir -p "$var/mnt0/archive/2026"
cp -r /usr/share/doc/bash "$var/mnt0/archive/2026/" 2>/dev/null || cp /etc/services "$var/mnt0/archive/2026/"
dd if=/dev/urandom of="$var/mnt0/archive/blob" bs=1M count=16 status=none
sum=$(md5sum < "$var/mnt0/archive/blob")
echo "  blob on node 0: $sum"
echo "  blob on node 1: $(md5sum < "$var/mnt1/archive/blob")"
mv "$var/mnt2/archive/blob" "$var/mnt2/archive/blob.v1"
echo "  renamed on node 2; node 0 lists: $(ls "$var/mnt0/archive" | tr '\n' ' ')"
scoutfs sync -p "$var/mnt0"
scoutfs df -p "$var/mnt1"
echo
old=$(leader_of 0 1 2)
echo "== kill -9 the leader (node $old): a survivor takes over, the agent fences node $old"
pid=$(pgrep -f -- "--foreground.* $var/mnt$old\$")
start=$(date +%s.%N)
kill -9 "$pid"
survivors=""
for n in 0 1 2; do if [ "$n" != "$old" ]; then survivors="$survivors $n"; fi; done
new=none
for _ in $(seq 1 200); do
    new=$(leader_of $survivors)
    [ "$new" != none ] && break
    sleep 0.05
done
echo "  node $new leads $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the kill"
for _ in $(seq 1 100); do mountpoint -q "$var/mnt$old" || break; sleep 0.1; done
grep "fencing rid" "$var/fenced.log" | tail -1 |
    sed -n 's/.*fencing rid \([0-9a-f]*\) at IP \([0-9.]*\) for \([a-z_]*\).*/  the new server asked for node '"$old"' (rid \1 at \2) to be fenced (\3): the agent ran scoutfs-fence-local, which cut that mount off, before the server took over its locks/p'
show_roles $survivors
n1=$(echo $survivors | cut -d' ' -f1)
echo "  blob.v1 on node $n1 after failover: $(md5sum < "$var/mnt$n1/archive/blob.v1")"
echo
echo "== node $old mounts again and rejoins as a follower"
mount_node "$old"
show_roles 0 1 2
echo "  blob.v1 on node $old: $(md5sum < "$var/mnt$old/archive/blob.v1")"
echo
echo "== the archive cycle: find what changed, copy it out, release it, stage it back on demand"
m="$var/mnt0"
arch="$var/archive"
rm -rf "$arch"
mkdir -p "$arch" "$m/projects"
pos=$(scoutfs statfs -p "$m" -s committed_seq)
echo "  the agent's saved position: committed_seq $pos"
for i in 1 2 3; do dd if=/dev/urandom of="$m/projects/run$i.dat" bs=1M count=8 status=none; done
scoutfs sync -p "$m"
echo "  scoutfs walk-inodes -p node0 -- data_seq $((pos + 1)) -1:"
scoutfs walk-inodes -p "$m" -- data_seq $((pos + 1)) -1 | sed 's/^/    /'
used() { scoutfs df -p "$1" | awk '$1 == "Data" { print $4 }'; }
before=$(used "$m")
for ino in $(scoutfs walk-inodes -p "$m" -- data_seq $((pos + 1)) -1 | awk '$1 != "#" { print $4 }' | sort -u); do
    path=$(scoutfs ino-path -p "$m" "$ino" | head -1)
    f="$m/$path"
    [ -f "$f" ] || continue
    ver=$(scoutfs stat -s data_version "$f")
    cp "$f" "$arch/$ino"
    scoutfs release "$f" -V "$ver"
    echo "  inode $ino ($path, data_version $ver): copied to var/archive/$ino and released"
done
scoutfs sync -p "$m"
echo "  scoutfs df: data blocks used $before before the releases, $(used "$m") after"
target="projects/run1.dat"
tino=$(stat -c %i "$m/$target")
echo "  scoutfs stat $target:"
scoutfs stat "$m/$target" | sed 's/^/    /'
echo "  node 1 reads $target: the reader waits for its offline blocks"
md5sum < "$var/mnt1/$target" > "$var/reader.out" &
reader=$!
for _ in $(seq 1 50); do
    [ -n "$(scoutfs data-waiting -p "$var/mnt1" -I 0 -B 0 2>/dev/null)" ] && break
    sleep 0.1
done
scoutfs data-waiting -p "$var/mnt1" -I 0 -B 0 | sed 's/^/    node 1 data-waiting: /'
ver=$(scoutfs stat -s data_version "$var/mnt2/$target")
echo "  node 2 stages it from var/archive/$tino (scoutfs stage ... -V $ver)"
scoutfs stage "$arch/$tino" "$var/mnt2/$target" -V "$ver"
wait "$reader"
echo "  the reader finished: $(cat "$var/reader.out") (archived copy: $(md5sum < "$arch/$tino"))"
[ "$(cat "$var/reader.out")" = "$(md5sum < "$arch/$tino")" ] || { echo "checksum mismatch" >&2; exit 1; }
scoutfs stat "$m/$target" | grep -E 'online|offline' | sed 's/^/    /'
echo
echo "== files out, then log merging folds every node's log tree into the shared fs root"
rm -r "$var/mnt$old/archive/2026"
ls -la "$var/mnt$new/archive"
logtrees() { scoutfs print "$meta" 2>/dev/null | grep -cE '^    rid [0-9]+ nr ' || true; }
before=$(logtrees)
merged() { scoutfs counters -p "$var/mnt$new" | awk '$1 == "log_merge_complete" { print $2 }'; }
done_before=$(merged)
scoutfs trigger -p "$var/mnt$new" log_merge_force_finalize_ours
for _ in $(seq 1 300); do [ "$(merged)" -gt "$done_before" ] && break; sleep 0.2; done
[ "$(merged)" -gt "$done_before" ] || { echo "no log merge completed in 60 s" >&2; exit 1; }
items=0
for n in 0 1 2; do items=$((items + $(scoutfs counters -p "$var/mnt$n" | awk '$1 == "log_merge_items" { print $2 }'))); done
echo "  log trees on the volume: $before before the merge, $(logtrees) after; the nodes merged $items items"
echo "  (scoutfs trigger forced it; by itself a tree is merged once it outgrows two levels or its node leaves)"
echo
echo "== quorum status and unmount of all three together"
show_roles 0 1 2
scoutfs quorum-status -p "$var/mnt$new" | awk '$1 == "vote_for" || $1 == "server_start_term" { printf "  %s", $0 } END { print "  (from scoutfs quorum-status on node '"$new"')" }'
pids=""
for n in 0 1 2; do umount "$var/mnt$n" & pids="$pids $!"; done
for p in $pids; do wait "$p"; done
trap - EXIT
pkill -f "scoutfs fenced --config $var/" 2>/dev/null || true
detach_loops
echo
echo "== scoutfs check: every block reachable exactly once, the allocators add up, the items agree"
scoutfs check "$meta" "$data" | sed 's/^/  /'
echo
echo "== scoutfs print var/meta.img: the names in the unmounted volume (each in its dirent, readdir and"
echo "   backref items, so 3 of each); only live names: the deleted and renamed ones went with the merge"
scoutfs print "$meta" | grep -A1 'dirent:' | grep 'name' | sort | uniq -c | head -20
