#!/usr/bin/env bash
# fuse_posix.sh - POSIX correctness of the FUSE mapping through a real mount:
# runs every check of tests/e2e/probe/posix_probe.c (unlinked-open files,
# rename over an open file, renameat2 flags, readdir cookies under churn,
# stable inode numbers, link counts and times, open flags, >4 GiB files,
# fsync, statfs, kernel forgets, concurrent Maildir, another uid's
# permissions), then unmounts and requires fsck and check to pass.
#
# usage: fuse_posix.sh PATH_TO_CATAMARAN   (root, /dev/fuse)
set -eu

CAT=${1:?usage: fuse_posix.sh PATH_TO_CATAMARAN}
NAME=fuse_posix
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
PROBE="$(dirname "$CAT")/tests/posix_probe"
[ -x "$PROBE" ] || { echo "FAIL: no $PROBE (build the posix_probe target)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-posix.XXXXXX")
M=$T/mnt
D1=$T/disk1.img
D2=$T/disk2.img
mkdir "$M"
chmod 755 "$T"   # uid 65534 (perm) must reach the mountpoint
cleanup() {
	umount -l "$M" 2>/dev/null || true
	pkill -9 -f "catamaran mount .*$T" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

CHECKS="unlinked-open rename-over-open renameat2 readdir-cookies readdir-fresh stable-ino
nlink-times open-flags large-file fsync statfs lookup-counts maildir perm"

expect 0 format --size 256M "$D1" "$D2"
expect 0 mount -o allow_other "$D1" "$D2" "$M"
grep -q " $M fuse.catamaran " /proc/mounts || fail "not in /proc/mounts"
ok "mounted with allow_other"

# Every check runs even when an earlier one failed; the verdict comes after.
failed=0
for c in $CHECKS; do
	if out=$(timeout 300 "$PROBE" "$c" "$M" "$CAT" 2>&1); then
		ok "$c"
	else
		failed=$((failed + 1))
		echo "FAIL: $c: ${out:-exit status $?}"
	fi
done

umount "$M"
for _ in $(seq 50); do pgrep -f "catamaran mount .*$T" >/dev/null || break; sleep 0.1; done
pgrep -f "catamaran mount .*$T" >/dev/null && fail "daemon still running after umount"
expect 0 fsck "$D1" "$D2"
ok "fsck clean after the checks"
expect 0 check "$D1" "$D2"
ok "mirrors identical"
echo "$NAME: $pass passed, $failed failed"
[ "$failed" = 0 ]
