#!/usr/bin/env bash
# fuse_mount.sh - a real FUSE mount: POSIX behaviour through the kernel,
# the Maildir pattern, kill -9 of the daemon and remount, clean unmount.
#
# usage: fuse_mount.sh PATH_TO_CATAMARAN   (root, /dev/fuse)
set -eu

CAT=${1:?usage: fuse_mount.sh PATH_TO_CATAMARAN}
NAME=fuse_mount
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-fuse.XXXXXX")
M=$T/mnt
D1=$T/disk1.img
D2=$T/disk2.img
mkdir "$M"
chmod 755 "$T"   # the other-user check must reach the mountpoint
cleanup() {
	pkill -9 -f "catamaran mount $D1" 2>/dev/null || true
	umount -l "$M" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

must_fail() { if "$@" 2>/dev/null; then fail "should have failed: $*"; fi; }
daemon_pid() { pgrep -f "catamaran mount .*$D1" | head -1; }

expect 0 format --size 256M "$D1" "$D2"
expect 0 mount -o allow_other "$D1" "$D2" "$M"
grep -q " $M fuse.catamaran " /proc/mounts || fail "not in /proc/mounts"
ok "mounted in the background"

# --- namespace ------------------------------------------------------------
mkdir -p "$M/a/b"
echo one > "$M/a/b/f"
must_fail rmdir "$M/a"
must_fail mv "$M/a" "$M/a/b/inside"
ln "$M/a/b/f" "$M/a/g"
[ "$(stat -c %h "$M/a/g")" = 2 ] || fail "nlink after ln is $(stat -c %h "$M/a/g")"
ln -s b/f "$M/a/s"
[ "$(readlink "$M/a/s")" = b/f ] && [ "$(cat "$M/a/s")" = one ] || fail "symlink"
echo two > "$M/a/h"
mv "$M/a/h" "$M/a/g"                      # rename over an existing name
[ "$(cat "$M/a/g")" = two ] && [ "$(stat -c %h "$M/a/b/f")" = 1 ] || fail "rename over"
must_fail sh -C -c "echo x > '$M/a/g'"   # noclobber: O_EXCL
must_fail mkdir "$M/a"
must_fail ln "$M/a" "$M/dirlink"
ok "mkdir, rmdir, rename, link, symlink and their errors"

# --- files -----------------------------------------------------------------
printf 'abc' > "$M/app"; printf 'def' >> "$M/app"
[ "$(cat "$M/app")" = abcdef ] || fail "O_APPEND"
truncate -s 2 "$M/app"; truncate -s 5 "$M/app"
[ "$(od -An -c "$M/app" | tr -d ' ')" = 'ab\0\0\0' ] || fail "truncate shrink/extend"
dd if=/dev/urandom of="$T/chunk" bs=1M count=3 status=none
dd if="$T/chunk" of="$M/sparse" bs=1M seek=5000 conv=notrunc status=none
[ "$(stat -c %s "$M/sparse")" = $((5003 * 1048576)) ] || fail "size beyond 4 GiB"
cmp <(dd if="$M/sparse" bs=1M skip=5000 status=none) "$T/chunk" || fail "data beyond 4 GiB"
[ "$(dd if="$M/sparse" bs=1M skip=100 count=1 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "hole not zero"
[ "$(stat -c %b "$M/sparse")" -lt 20000 ] || fail "sparse file allocated its holes"
touch -d '2001-02-03 04:05:06.123456789' "$M/app"
[ "$(stat -c %y "$M/app")" = "2001-02-03 04:05:06.123456789 +0000" ] || fail "utimensat: $(stat -c %y "$M/app")"
name255=$(printf 'n%.0s' $(seq 255))
touch "$M/$name255" && must_fail touch "$M/${name255}x"
df "$M" | grep -q catamaran || fail "statfs"
ok "append, truncate, >4 GiB sparse file, timestamps, 255-byte names, statfs"

# --- permissions through allow_other + default_permissions ---------------------
echo secret > "$M/private"; chmod 600 "$M/private"
chmod 1777 "$M/a"
if command -v setpriv >/dev/null; then
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	must_fail as_nobody cat "$M/private"
	as_nobody sh -c "echo mine > '$M/a/nobodys'"
	[ "$(stat -c %u "$M/a/nobodys")" = 65534 ] || fail "owner of a new file"
	ok "permission checks for another user"
fi

# --- Maildir pattern, concurrent ---------------------------------------------
expect 0 bench maildir --threads 4 --seconds 2 "$M"
n=$(ls "$M/bench/new" | wc -l)
[ "$n" -gt 0 ] && [ "$(ls "$M/bench/tmp" | wc -l)" = 0 ] || fail "maildir: $n in new/, tmp not empty"
ok "Maildir deliveries through the mount ($n messages)"

# --- kill -9 and remount ----------------------------------------------------------
for i in $(seq 1 100); do echo "msg $i" > "$M/k$i"; done
mv "$M/k1" "$M/a/k1moved"
kill -9 "$(daemon_pid)"
sleep 0.5
must_fail ls "$M"
expect 0 mount "$D1" "$D2" "$M"
[ "$(cat "$M/k100")" = "msg 100" ] && [ "$(cat "$M/a/k1moved")" = "msg 1" ] || fail "lost after kill -9"
[ "$(ls "$M/bench/new" | wc -l)" = "$n" ] || fail "maildir count changed after kill -9"
cmp <(dd if="$M/sparse" bs=1M skip=5000 status=none) "$T/chunk" || fail "data after kill -9"
ok "kill -9, dead mount cleaned up, remount: everything there"

# --- clean unmount -------------------------------------------------------------------
umount "$M"
for _ in $(seq 50); do [ -z "$(daemon_pid)" ] && break; sleep 0.1; done
[ -z "$(daemon_pid)" ] || fail "daemon still running after umount"
expect 0 status "$D1" "$D2"
grep -q "^Verdict: clean" "$T/out" || fail "not clean after umount"
expect 0 check "$D1" "$D2"
ok "umount: daemon exits, disks clean and identical"
echo "$NAME: $pass passed, 0 failed"
