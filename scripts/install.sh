#!/usr/bin/env bash
# `make install` and `make uninstall`: copies the scoutfs binary, the mount helper, the fence
# script, the man pages and the systemd units into the system, or removes them again. Nothing
# is enabled or started.
#
#   scripts/install.sh install BINARY
#   scripts/install.sh uninstall
#
# DESTDIR (a staging root, default none), PREFIX (default /usr/local), UNITDIR (default
# /etc/systemd/system) and HELPERDIR (where mount(8) looks for mount.scoutfs, default /sbin)
# move the targets. Every directory that install has to create is written to the record file
# .install-dirs (at the top of the source tree, one "DESTDIR|DIR" line each), and uninstall
# with the same DESTDIR removes those directories again once they are empty, so that install
# then uninstall leaves the system as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr/local}"
UNITDIR="${UNITDIR:-/etc/systemd/system}"
HELPERDIR="${HELPERDIR:-/sbin}"
record="$PWD/.install-dirs"

# source, mode, target (without DESTDIR)
files() {
    echo "${BINARY:--} 0755 $PREFIX/sbin/scoutfs"
    echo "scripts/mount.scoutfs 0755 $HELPERDIR/mount.scoutfs"
    echo "scripts/scoutfs-fence-local 0755 $PREFIX/sbin/scoutfs-fence-local"
    echo "man/scoutfs.8 0644 $PREFIX/share/man/man8/scoutfs.8"
    echo "man/scoutfs-fenced.8 0644 $PREFIX/share/man/man8/scoutfs-fenced.8"
    echo "man/scoutfs.5 0644 $PREFIX/share/man/man5/scoutfs.5"
    echo "systemd/scoutfs-fenced.service 0644 $UNITDIR/scoutfs-fenced.service"
    echo "systemd/scoutfs-mount@.service 0644 $UNITDIR/scoutfs-mount@.service"
}

# reloads systemd's unit files when systemd runs this (real) system
reload_systemd() {
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl daemon-reload
    fi
}

# creates the missing directories above $1, outermost first, recording each
make_parents() {
    local dir missing=() p
    dir="$(dirname "$1")"
    p="$dir"
    while [ ! -d "$p" ]; do
        missing=("$p" "${missing[@]}")
        p="$(dirname "$p")"
    done
    for p in "${missing[@]}"; do
        mkdir -m 0755 "$p"
        echo "$DESTDIR|$p" >> "$record"
    done
}

case "${1:-}" in
install)
    BINARY="${2:?usage: $0 install BINARY}"
    [ -x "$BINARY" ] || { echo "install: $BINARY is not built (run make build first)" >&2; exit 1; }
    while read -r src mode target; do
        make_parents "$DESTDIR$target"
        install -m "$mode" "$src" "$DESTDIR$target"
        echo "installed $DESTDIR$target"
    done < <(files)
    reload_systemd
    ;;
uninstall)
    while read -r _src _mode target; do
        [ -n "$target" ] || continue
        if [ -e "$DESTDIR$target" ] || [ -L "$DESTDIR$target" ]; then
            rm -f "$DESTDIR$target"
            echo "removed $DESTDIR$target"
        fi
    done < <(files)
    if [ -f "$record" ]; then
        # innermost first; only the directories install created here, and only when empty
        tac "$record" | while IFS='|' read -r root dir; do
            [ "$root" = "$DESTDIR" ] || continue
            if [ -d "$dir" ] && rmdir "$dir" 2>/dev/null; then echo "removed $dir/"; fi
        done
        # the lines of other staging roots stay
        awk -F'|' -v root="$DESTDIR" '$1 != root' "$record" > "$record.new"
        if [ -s "$record.new" ]; then mv "$record.new" "$record"; else rm -f "$record.new" "$record"; fi
    fi
    reload_systemd
    ;;
*)
    echo "usage: $0 install BINARY | uninstall" >&2
    exit 64
    ;;
esac
