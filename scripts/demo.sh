#!/usr/bin/env bash
# The main job, as far as the project goes today: a volume on device files under var/,
# mounted with `mount -t scoutfs` (the quorum-slot mount runs the server; its client talks to
# it over TCP), files going in and out, a clean unmount, a remount that sees them, and the
# volume printed. The three-node cluster comes with the quorum and cluster issues.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug/scoutfs
[ -x "$bin" ] || swift build
install -m 0755 "$bin" /usr/local/sbin/scoutfs
install -m 0755 scripts/mount.scoutfs /sbin/mount.scoutfs
mkdir -p var/mnt
umount var/mnt 2>/dev/null || true
rm -f var/meta.img var/data.img
truncate -s 8G var/meta.img
truncate -s 8G var/data.img
meta=$PWD/var/meta.img
data=$PWD/var/data.img
mnt=$PWD/var/mnt
trap 'umount "$mnt" 2>/dev/null || true' EXIT

echo "== scoutfs mkfs (three quorum slots on 127.0.0.1-3)"
scoutfs mkfs -A -f -Q 0,127.0.0.1,42000 -Q 1,127.0.0.2,42001 -Q 2,127.0.0.3,42002 "$meta" "$data"
echo
echo "== mount -t scoutfs -o metadev_path=$meta,quorum_slot_nr=0 $data $mnt"
mount -t scoutfs -o "metadev_path=$meta,quorum_slot_nr=0" "$data" "$mnt"
grep " $mnt " /proc/mounts
echo
echo "== files in"
mkdir -p "$mnt/archive/2026"
cp -r /usr/share/doc/bash "$mnt/archive/2026/" 2>/dev/null || cp /etc/services "$mnt/archive/2026/"
dd if=/dev/urandom of="$mnt/archive/blob" bs=1M count=16 status=none
sum=$(md5sum < "$mnt/archive/blob")
ln -s archive/blob "$mnt/latest"
ls -lR "$mnt" | head -20
scoutfs df -p "$mnt"
echo
echo "== clean unmount (commit + farewell before umount returns), then mount again"
umount "$mnt"
mount -t scoutfs -o "metadev_path=$meta,quorum_slot_nr=0" "$data" "$mnt"
echo "blob checksum before: $sum"
echo "blob checksum after:  $(md5sum < "$mnt/latest")"
[ "$sum" = "$(md5sum < "$mnt/latest")" ]
echo
echo "== files out"
rm -r "$mnt/archive/2026"
ls -la "$mnt" "$mnt/archive"
scoutfs statfs -p "$mnt"
scoutfs counters -p "$mnt"
umount "$mnt"
echo
echo "== scoutfs print var/meta.img | grep dirent names (the unmounted volume, read by print)"
scoutfs print "$meta" | grep -A1 'dirent:' | grep 'name' | sort | uniq -c | head -20
