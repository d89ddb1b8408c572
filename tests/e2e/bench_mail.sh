#!/usr/bin/env bash
# bench_mail.sh - `catamaran bench mail` (the Mailboat workload) as a smoke
# test: a short run at 2 threads on a fresh tmpfs and on a Catamaran mount
# must exit 0 with "VERIFY OK" (delivered - deleted == left in the store);
# a leftover in a tmp/ must make it exit 1 with "VERIFY MISMATCH"; usage
# errors exit 2; --bare passes the same check. Then unmount and fsck
# clean. A few seconds.
#
# usage: bench_mail.sh PATH_TO_CATAMARAN   (root for mount, /dev/fuse)
set -eu

CAT=${1:?usage: bench_mail.sh PATH_TO_CATAMARAN}
NAME=bench_mail
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-benchmail.XXXXXX")
TMPFS=$T/tmpfs
M=$T/mnt
mkdir "$TMPFS" "$M"
daemon=
cleanup() {
	umount "$TMPFS" 2>/dev/null || true
	umount -l "$M" 2>/dev/null || true
	[ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

# verified RUN: the last run printed VERIFY OK and a request rate
verified() {
	grep -q "^VERIFY OK: " "$T/out" || fail "$1: no VERIFY OK"
	grep -q "requests/s" "$T/out" || fail "$1: no requests/s"
}

expect 0 bench mail --help
grep -q "A request is one iteration" "$T/out" || fail "--help does not say what a request is"
expect 2 bench mail
expect 2 bench mail "$T/no-such-dir"
expect 2 bench mail --threads 0 "$TMPFS"
expect 2 bench mail --users x "$TMPFS"
ok "--help, usage errors"

mount -t tmpfs -o size=64M tmpfs "$TMPFS"
expect 0 bench mail --threads 2 --iterations 2000 --seed 7 "$TMPFS"
verified tmpfs
expect 0 bench mail --json --iterations 500 --users 3 "$TMPFS"
grep -q '"verified":true' "$T/out" || fail "--json: not verified"
[ "$(jq -r '.requests' "$T/out" 2>/dev/null || echo 500)" = 500 ] || fail "--json: requests"
ok "tmpfs: 2 threads x 2000 iterations and a JSON run, VERIFY OK"

expect 0 bench mail --bare --threads 2 --iterations 2000 "$TMPFS"
verified bare
grep -q "^bench mail --bare (no library, no fsync, not durable)" "$T/out" ||
	fail "--bare: the heading does not say what it is"
expect 0 bench mail --bare --json --iterations 300 --users 3 "$TMPFS"
grep -q '"mode":"bare"' "$T/out" || fail "--bare --json: no mode"
ok "tmpfs: --bare (the floor), VERIFY OK"

# A file left in a tmp/ is something the check must catch.
mkdir -p "$TMPFS/u0/tmp"
echo leftover > "$TMPFS/u0/tmp/1.M0P1Q1.elsewhere"
expect 1 bench mail --iterations 100 "$TMPFS"
grep -q "^VERIFY MISMATCH: .*tmp/ leftovers: 1" "$T/out" || fail "no VERIFY MISMATCH"
ok "a tmp/ leftover: VERIFY MISMATCH, exit 1"

expect 0 format --size 128M "$T/d1" "$T/d2"
expect 0 mount "$T/d1" "$T/d2" "$M"
daemon=$(pgrep -f "catamaran mount $T/d1" | head -1 || true)
mkdir "$M/spool"
expect 0 bench mail --threads 2 --iterations 40 "$M/spool"
verified catamaran
ok "Catamaran mount: 2 threads x 40 iterations, VERIFY OK"

umount "$M"
for _ in $(seq 50); do
	[ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null || break
	sleep 0.1
done
daemon=
expect 0 fsck "$T/d1" "$T/d2"
ok "unmounted, fsck clean"
echo "$NAME: $pass passed, 0 failed"
