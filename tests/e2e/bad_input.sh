#!/bin/bash
# bad_input.sh - the catamaran command refuses bad disks and bad usage with
# a non-zero exit, one line on stderr naming the disk, and writes nothing.
#
# Usage: bash bad_input.sh PATH_TO_CATAMARAN   (as root for the read-only
# bind mount case; it is skipped otherwise)
set -euo pipefail

CAT=${1:?usage: bad_input.sh PATH_TO_CATAMARAN}
NAME=bad_input
T=$(mktemp -d)
LOCKER=
cleanup() {
	[ -n "$LOCKER" ] && kill "$LOCKER" 2>/dev/null
	mountpoint -q "$T/ro" 2>/dev/null && umount "$T/ro"
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"
sums() { md5sum "$@" 2>&1 || true; }

# refuse RC TEXT ARGS...: catamaran ARGS must exit RC with exactly one line
# on stderr that contains TEXT, and leave every file in WATCH unchanged.
WATCH=()
refuse() {
	local want=$1 text=$2; shift 2
	local before; before=$(sums "${WATCH[@]}")
	run "$@"
	[ "$rc" = "$want" ] || fail "catamaran $* exited $rc, expected $want"
	[ "$(wc -l <"$T/err")" = 1 ] || fail "catamaran $*: expected one line on stderr"
	grep -qF -- "$text" "$T/err" || fail "catamaran $*: message does not mention '$text'"
	[ "$(sums "${WATCH[@]}")" = "$before" ] || fail "catamaran $*: a disk was written"
	ok "$* -> $(head -c 150 "$T/err")"
}
# flip FILE OFFSET: invert one byte in place.
flip() {
	local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# One good array, its superblocks in both slots (a recover rewrote them).
A=$T/a.img B=$T/b.img
expect 0 format --size 8M "$A" "$B"
expect 0 recover "$A" "$B"
fresh_pair() { cp "$A" "$1"; cp "$B" "$2"; }

# --- not a Catamaran disk --------------------------------------------------
R=$T/random.img
head -c 8M /dev/urandom >"$R"
WATCH=("$A" "$R")
refuse 2 "$R" recover "$A" "$R"
refuse 2 "$R" check "$A" "$R"
refuse 1 "$R" status "$A" "$R"
grep -q '^Verdict: degraded' "$T/out" || fail "status verdict for a foreign disk"

# --- disks of two different arrays ------------------------------------------
C=$T/c.img D=$T/d.img
expect 0 format --size 8M "$C" "$D"
WATCH=("$A" "$D")
refuse 2 "$D" recover "$A" "$D"
refuse 1 "different arrays" status "$A" "$D"

# --- damaged superblocks ----------------------------------------------------
E=$T/e.img F=$T/f.img
fresh_pair "$E" "$F"
flip "$F" 200
flip "$F" $((4096 + 200))
WATCH=("$E" "$F")
refuse 2 "$F" recover "$E" "$F"
refuse 2 "superblock damaged" check "$E" "$F"
refuse 1 "$F" status "$E" "$F"

G=$T/g.img H=$T/h.img
fresh_pair "$G" "$H"
flip "$H" 200 # slot A only: slot B still holds a good superblock
expect 0 status "$G" "$H"
grep -q "slot A  *checksum mismatch" "$T/out" || fail "status does not show the bad slot"
expect 0 check "$G" "$H"
expect 0 recover "$G" "$H"
ok "one damaged superblock slot: the other slot is used"

# --- size: disk shrunk after format, disk too small ------------------------
I=$T/i.img J=$T/j.img
fresh_pair "$I" "$J"
truncate -s 6M "$J"
WATCH=("$I" "$J")
refuse 2 "$J" recover "$I" "$J"
refuse 1 "$J" status "$I" "$J"

S=$T/small.img
truncate -s 1M "$S"
cp "$A" "$T/big.img"
WATCH=("$S" "$T/big.img")
refuse 2 "$S" format --force "$S" "$T/big.img"
refuse 2 "too small" format --size 1M "$T/new1.img" "$T/new2.img"
[ ! -e "$T/new1.img" ] && [ ! -e "$T/new2.img" ] || fail "format left files behind"

# format creates a file, then meets a disk it must not overwrite: the new
# file is removed again.
WATCH=("$R")
refuse 2 "$R" format --size 8M "$T/new3.img" "$R"
[ ! -e "$T/new3.img" ] || fail "format left $T/new3.img behind"

# --- the same disk twice ----------------------------------------------------
ln "$A" "$T/a-link.img"
ln -s "$B" "$T/b-symlink.img"
WATCH=("$A" "$B")
refuse 2 "$A" recover "$A" "$A"
refuse 2 "$T/a-link.img" recover "$A" "$T/a-link.img"
refuse 2 "$T/b-symlink.img" check "$B" "$T/b-symlink.img"
refuse 2 "$A" format --force "$A" "$T/../$(basename "$T")/a.img"

# --- missing path -----------------------------------------------------------
refuse 2 "$T/missing.img: no such file" recover "$A" "$T/missing.img"
refuse 2 "$T/missing.img" check "$T/missing.img" "$B"
refuse 1 "$T/missing.img" status "$A" "$T/missing.img"
refuse 2 "$T/nodir/x.img" format --size 8M "$T/nodir/x.img" "$T/x2.img"
[ ! -e "$T/x2.img" ] || fail "format left $T/x2.img behind"

# --- in use by another process ----------------------------------------------
if command -v flock >/dev/null; then
	# The lock holder is the sleep itself (exec), so killing it frees the lock.
	(exec 9<"$B"; flock -x 9; exec sleep 60) &
	LOCKER=$!
	for _ in $(seq 50); do flock -n -x "$B" true 2>/dev/null || break; sleep 0.1; done
	refuse 2 "$B: in use" recover "$A" "$B"
	kill "$LOCKER"
	wait "$LOCKER" 2>/dev/null || true
	LOCKER=
fi

# --- read-only file ---------------------------------------------------------
mkdir "$T/rw" "$T/ro"
fresh_pair "$T/rw/k.img" "$T/rw/l.img"
if mount --bind "$T/rw" "$T/ro" 2>/dev/null && mount -o remount,ro,bind "$T/ro" 2>/dev/null; then
	WATCH=("$T/rw/k.img" "$T/rw/l.img")
	refuse 2 "$T/ro/k.img: not writable" recover "$T/ro/k.img" "$T/ro/l.img"
	refuse 2 "not writable" format --force "$T/ro/k.img" "$T/ro/l.img"
	expect 0 check "$T/ro/k.img" "$T/ro/l.img"
	expect 0 status "$T/ro/k.img" "$T/ro/l.img"
	ok "check and status work on read-only disks"
	umount "$T/ro"
else
	echo "skip: read-only bind mount not possible here (needs root)"
fi

# --- format over an existing array ------------------------------------------
WATCH=("$A" "$B")
refuse 2 "already holds a Catamaran array" format "$A" "$B"
expect 0 format --force "$A" "$B"
ok "format --force overwrites it"

# --- bad usage --------------------------------------------------------------
refuse 2 "unknown command 'frobnicate'" frobnicate "$A" "$B"
refuse 2 "unknown option '--bogus'" check --bogus "$A" "$B"
refuse 2 "unknown option '-x'" recover -x "$A" "$B"
refuse 2 "needs exactly two disks" recover "$A"
refuse 2 "unknown command 'nope'" help nope
refuse 2 "--size" format --size 12Q "$T/y1.img" "$T/y2.img"
refuse 2 "--size" format "$T/y1.img" "$T/y2.img" --size
[ ! -e "$T/y1.img" ] || fail "format with bad usage created a file"
expect 2
ok "no arguments: usage, exit 2"

echo "$NAME: $pass passed, 0 failed"
