#!/usr/bin/env bash
# The main job, as far as the project goes today: make a three-slot volume on device files
# under var/ with our mkfs, then print it with our print (verifying every block it walks).
# Mounting and the three-node cluster come with the mount, quorum and cluster issues.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug/scoutfs
[ -x "$bin" ] || swift build
mkdir -p var
rm -f var/meta.img var/data.img
truncate -s 1G var/meta.img
truncate -s 4G var/data.img
echo "== scoutfs mkfs (three quorum slots on 127.0.0.1-3)"
"$bin" mkfs -A -Q 0,127.0.0.1,42000 -Q 1,127.0.0.2,42001 -Q 2,127.0.0.3,42002 var/meta.img var/data.img
echo
echo "== scoutfs mkfs again without -f: refused, nothing touched"
if "$bin" mkfs -A -Q 0,127.0.0.1,42000 var/meta.img var/data.img; then
    echo "unexpected: mkfs overwrote a filesystem" >&2
    exit 1
fi
echo
echo "== scoutfs print -S var/meta.img (super, quorum blocks, allocators; -S skips the large trees)"
"$bin" print -S var/meta.img > var/print-S.out
head -40 var/print-S.out
echo "..."
echo
echo "== scoutfs print var/meta.img | tail (fs_root: the root inode)"
"$bin" print var/meta.img > var/print.out
tail -12 var/print.out
