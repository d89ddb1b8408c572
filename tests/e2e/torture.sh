#!/usr/bin/env bash
# torture.sh - a short `catamaran torture` of every scenario (the long runs
# are documented in the README, not CI): each must finish with no
# violation, acknowledge and verify deliveries, and keep fsck and the
# mirrors clean. Then the checker's self-test: a message cut in half behind
# the server's back must be reported (exit 1, partial >= 1) - the tool can
# fail.
#
# usage: torture.sh PATH_TO_CATAMARAN   (root, /dev/fuse, loop devices)
# CATAMARAN_TORTURE_CYCLES (default 2) sets the cycles per scenario.
set -eu

CAT=${1:?usage: torture.sh PATH_TO_CATAMARAN}
NAME=torture
CYCLES=${CATAMARAN_TORTURE_CYCLES:-2}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-torture.XXXXXX")
cleanup() {
	pkill -f "catamaran torture .*$T" 2>/dev/null || true
	for m in "$T"/w*/mnt; do umount -l "$m" 2>/dev/null || true; done
	for d in $(losetup -a | grep "$T" | cut -d: -f1); do losetup -d "$d"; done
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

# field NAME KEY: the number KEY of scenario NAME in $T/out (--json)
field() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print([s for s in d["scenarios"] if s["name"]==sys.argv[2]][0][sys.argv[3]])' "$T/out" "$1" "$2"
}

expect 0 torture --json --cycles "$CYCLES" --seconds-per-cycle 2 --size 256M --seed 42 "$T/w1"
ok "torture all: exit 0, no violation"
for s in kill kill-mail pull-disk1 pull-disk2 pull-during-resync pull-then-other power; do
	[ "$(field $s cycles)" = "$CYCLES" ] || fail "$s: $(field $s cycles) cycles"
	[ "$(field $s acked)" -gt 0 ] || fail "$s: nothing acknowledged"
	[ "$(field $s verified)" -gt 0 ] || fail "$s: nothing verified"
	for k in lost partial duplicated resurrected unexpected_errors failed_cycles; do
		[ "$(field $s $k)" = 0 ] || fail "$s: $k = $(field $s $k)"
	done
	[ "$(field $s fsck_clean)" = "$CYCLES" ] || fail "$s: fsck not clean"
	[ "$(field $s mirrors_identical)" = "$CYCLES" ] || fail "$s: mirrors differ"
	ok "$s: $(field $s acked) acknowledged, $(field $s verified) verified, nothing lost"
done
grep -q "mounted with -o crashtest" "$T/w1/torture.log" || fail "power did not use -o crashtest"
ok "power ran over the crash-simulating disks"

expect 1 torture --json --cycles 1 --seconds-per-cycle 2 --size 256M --scenario selftest-damage "$T/w2"
[ "$(field selftest-damage partial)" -ge 1 ] || fail "the damaged message was not reported"
ok "self-test: a message cut behind the server's back is reported (exit 1)"

expect 2 torture --scenario nosuch "$T/w3"
grep -q "unknown scenario" "$T/err" || fail "no message for an unknown scenario"
ok "unknown scenario refused"

echo "$NAME: $pass passed"
