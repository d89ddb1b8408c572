#!/bin/bash
# fsck.sh - `catamaran fsck` on two small disk files: a fresh filesystem is
# clean; damage is reported (4), repaired (1) and then clean (0); a superblock
# beyond repair is named (4); bad usage is 16; --json is one valid object.
#
# Usage: bash fsck.sh PATH_TO_CATAMARAN
set -euo pipefail

CAT=${1:?usage: fsck.sh PATH_TO_CATAMARAN}
NAME=fsck
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
A=$T/disk1.img
B=$T/disk2.img
. "$(dirname "$0")/lib/assert.sh"
has() { grep -qE -- "$1" "$T/out" || fail "output of the last command lacks /$1/"; }
json_field() { grep -oE "\"$1\": [^,}]*" "$T/out" | head -n1 | sed 's/.*: //; s/"//g'; }

# Write byte value $2 at byte $1 of the filesystem (mirror block 0 = fs block 0)
# on both disks.
poke() {
	for d in "$A" "$B"; do
		printf "\\x$2" | dd of="$d" bs=1 seek=$((DATA_OFFSET * 4096 + $1)) conv=notrunc \
			status=none
	done
}

expect 0 format --size 16M "$A" "$B"
expect 0 status --json "$A" "$B"
DATA_OFFSET=$(json_field data_offset)
[ "$DATA_OFFSET" -gt 0 ] || fail "data_offset: $DATA_OFFSET"

expect 0 help fsck
has "^Usage: catamaran fsck"
expect 16 fsck "$A"
expect 16 fsck --frobnicate "$A" "$B"
ok "help and bad usage (16)"

expect 0 fsck "$A" "$B"
has "^Filesystem clean"
has "^3/[0-9]+ inodes \(2 directories"
ok "a fresh filesystem is clean"

expect 0 fsck --json "$A" "$B"
[ "$(wc -l <"$T/out")" = 1 ] || fail "fsck --json is not one line"
if command -v python3 >/dev/null; then
	python3 -m json.tool "$T/out" >/dev/null || fail "fsck --json is not valid JSON"
fi
has '"result": "clean"'
has '"errors_left": 0'
ok "fsck --json"

poke 2000 a5                      # the superblock's unused (zero) end
expect 4 fsck "$A" "$B"
has "^superblock: damaged bytes"
has "run 'catamaran fsck --repair'"
expect 1 fsck --repair "$A" "$B"
has "^Filesystem repaired"
expect 0 fsck "$A" "$B"
ok "damage: found (4), repaired (1), then clean (0)"

poke 40 a5                        # nblocks: not repairable
expect 4 fsck "$A" "$B"
grep -q "superblock is damaged" "$T/err" || fail "no message naming the superblock"
expect 4 fsck --json "$A" "$B"
has '"result": "errors"'
ok "a superblock beyond repair is named (4)"

echo "$NAME: $pass passed"
