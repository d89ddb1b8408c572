#!/usr/bin/env bash
# fuse_disk_admin.sh - disk administration while mounted, under load:
# `disk fail` 1 (no client error), `disk replace` 1 (online rebuild), then
# `disk fail` 2: everything still there; `scrub` finds the disks identical;
# a loop-device disk really pulled (truncate + losetup -c) is failed by the
# mirror and service goes on.
#
# usage: fuse_disk_admin.sh PATH_TO_CATAMARAN   (root, /dev/fuse, losetup)
set -eu

CAT=${1:?usage: fuse_disk_admin.sh PATH_TO_CATAMARAN}
NAME=fuse_disk_admin
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-admin.XXXXXX")
M=$T/mnt
mkdir "$M"
loop=
cleanup() {
	pkill -9 -f "catamaran mount .*$T" 2>/dev/null || true
	umount -l "$M" 2>/dev/null || true
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

# A writer that stops at the first error: every file it acknowledged
# (written, closed) goes to a ledger outside the volume.
writer() {
	local i=0
	while [ ! -e "$T/stop" ]; do
		i=$((i + 1))
		printf 'message %d\n%0500d\n' "$i" 0 > "$M/w$i" || { echo "write $i failed" > "$T/writer-error"; return 1; }
		echo "$i" >> "$T/ledger"
	done
}
verify_ledger() {
	while read -r i; do
		[ "$(head -1 "$M/w$i")" = "message $i" ] || fail "acknowledged file w$i lost or wrong"
	done < "$T/ledger"
}

truncate -s 128M "$T/d1" "$T/d2" "$T/d3"
expect 0 format --force --assume-clean "$T/d1" "$T/d2"
expect 0 mount "$T/d1" "$T/d2" "$M"
writer & wpid=$!
sleep 1
expect 0 disk fail "$M" 1
expect 0 status "$M"
grep -q "disk 1 *failed" "$T/out" || fail "status does not show disk 1 failed"
sleep 1
expect 0 disk replace "$M" 1 "$T/d3"
grep -q "rebuilt disk 1" "$T/out" || fail "no rebuild report"
expect 0 status --json "$M"
grep -q '"disk1": {"path": "'"$T"'/d3", "state": "in-sync"' "$T/out" || fail "disk 1 not in sync after replace"
sleep 1
expect 0 scrub "$M"
grep -q "0 differed" "$T/out" || fail "scrub found differences after the rebuild"
expect 0 disk fail "$M" 2
sleep 1
touch "$T/stop"; wait "$wpid" || true
[ ! -e "$T/writer-error" ] || fail "a client saw an error: $(cat "$T/writer-error")"
verify_ledger
expect 1 disk fail "$M" 1          # the only disk in service: refused
ok "fail 1, replace 1 with online rebuild, scrub, fail 2 under load: no client error, $(wc -l < "$T/ledger") files intact"
umount "$M"

# --- a loop device pulled for real ---------------------------------------------
if command -v losetup >/dev/null; then
	rm -f "$T/stop" "$T/ledger"
	truncate -s 128M "$T/l1" "$T/l2"
	loop=$(losetup --find --show "$T/l1")
	expect 0 format --force --assume-clean "$loop" "$T/l2"
	expect 0 mount "$loop" "$T/l2" "$M"
	writer & wpid=$!
	sleep 1
	truncate -s 0 "$T/l1"; losetup -c "$loop"
	sleep 2
	touch "$T/stop"; wait "$wpid" || true
	[ ! -e "$T/writer-error" ] || fail "a client saw an error after the pull: $(cat "$T/writer-error")"
	expect 0 status "$M"
	grep -q "disk 1 *failed" "$T/out" || fail "the pulled disk is not marked failed: $(cat "$T/out")"
	verify_ledger
	ok "loop device pulled under load: disk 1 failed, service went on, $(wc -l < "$T/ledger") files intact"
	umount "$M"
fi
echo "$NAME: $pass passed, 0 failed"
