#!/bin/bash
# cli_basics.sh - the everyday path of the catamaran command on two small
# disk files: help, format, status (text and JSON), recover, check, and
# damage that only a full resync can find.
#
# Usage: bash cli_basics.sh PATH_TO_CATAMARAN
set -euo pipefail

CAT=${1:?usage: cli_basics.sh PATH_TO_CATAMARAN}
NAME=cli_basics
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
A=$T/disk1.img
B=$T/disk2.img
. "$(dirname "$0")/lib/assert.sh"
has() { grep -qE -- "$1" "$T/out" || fail "output of the last command lacks /$1/"; }
json_field() { grep -oE "\"$1\": [^,}]*" "$T/out" | head -n1 | sed 's/.*: //; s/"//g'; }

# --- help -------------------------------------------------------------------
expect 0 --help
for c in format status recover check "bench blockdev"; do has "^  $c "; done
ok "--help lists every command"
expect 0 help format
has "^Usage: catamaran format"
expect 0 format --help
has "--size SIZE"
ok "help format / format --help"

# --- format -----------------------------------------------------------------
expect 0 format --size 8M "$A" "$B"
has "uuid +[0-9a-f-]{36}"
has "size +7\.0 MiB"
[ "$(stat -c %s "$A")" = 8388608 ] && [ "$(stat -c %s "$B")" = 8388608 ] ||
	fail "format did not create two 8 MiB files"
ok "format creates two 8 MiB disks"

# --- status -----------------------------------------------------------------
expect 0 status "$A" "$B"
has "^Disk 1: $A"
has "^Disk 2: $B"
has "^Verdict: clean"
ok "status: clean"

expect 0 status --json "$A" "$B"
[ "$(wc -l <"$T/out")" = 1 ] || fail "status --json is not one line"
if command -v python3 >/dev/null; then
	python3 -m json.tool "$T/out" >/dev/null || fail "status --json is not valid JSON"
fi
has '"verdict": "clean"'
has '"disk_index": 0,.*"disk_index": 1,'
[ "$(grep -o '"superblock_valid": true' "$T/out" | wc -l)" = 2 ] || fail "superblock_valid"
[ "$(grep -oE '"uuid": "[0-9a-f-]{36}"' "$T/out" | sort -u | wc -l)" = 1 ] || fail "uuids differ"
DATA_OFFSET=$(json_field data_offset)
DATA_BLOCKS=$(json_field data_blocks)
[ "$DATA_OFFSET" -gt 0 ] && [ "$DATA_BLOCKS" -gt 600 ] || fail "geometry: $DATA_OFFSET $DATA_BLOCKS"
ok "status --json: fields and geometry (data at block $DATA_OFFSET)"

# --- recover and check on a clean array ----------------------------------
expect 0 recover "$A" "$B"
has "Both disks are in sync"
ok "recover on a clean array"
expect 0 check "$A" "$B"
has "^Disks are identical: $DATA_BLOCKS blocks"
ok "check: identical"

# --- damage the bitmap does not know about --------------------------------
# corrupt BLOCK [COUNT]: overwrite the start of data blocks on disk 2.
corrupt() {
	local n=${2:-1} i
	for ((i = 0; i < n; i++)); do
		printf 'X' | dd of="$B" bs=1 seek=$(((DATA_OFFSET + $1 + i) * 4096 + 7)) \
			conv=notrunc status=none
	done
}
corrupt 10
expect 1 check "$A" "$B"
has "^blocks 10-10 \(1\)$"
has "^Disks differ: 1 block in 1 range"
ok "check finds one corrupted block"

expect 0 recover "$A" "$B"
expect 1 check "$A" "$B"
ok "recover without --full leaves unknown damage alone"

expect 0 recover --full "$A" "$B"
# a full resync copies every chunk whole, without comparing first
has "7 chunks visited, 1792 blocks \(7\.0 MiB\) copied"
expect 0 check "$A" "$B"
ok "recover --full repairs it"

corrupt 600 4
corrupt 100
corrupt 101
corrupt 103
expect 1 check "$A" "$B"
[ "$(grep '^blocks' "$T/out" | tr '\n' ' ')" = "blocks 100-101 (2) blocks 103-103 (1) blocks 600-603 (4) " ] ||
	fail "check ranges are not maximal runs in ascending order"
has "Disks differ: 7 blocks in 3 ranges"
ok "check coalesces runs in ascending order"
expect 0 recover --full "$A" "$B"
expect 0 check "$A" "$B"
expect 0 status "$A" "$B"
has "^Verdict: clean"
ok "full resync again, array clean"

# --- a disk marked for a full sync --------------------------------------
C=$T/disk3.img
D=$T/disk4.img
truncate -s 8M "$C" "$D" # existing files: format cannot know they match
# (far from the blocks the new filesystem writes, so the disks stay different)
printf 'junk' | dd of="$D" bs=1 seek=$(((DATA_OFFSET + 1700) * 4096)) conv=notrunc status=none
expect 0 format "$C" "$D"
has "disk 2 needs a full sync"
expect 0 status --json "$C" "$D"
has '"verdict": "needs-resync"'
has '"resync": "full"'
expect 1 check "$C" "$D"
expect 0 recover "$C" "$D"
has "Resync done: 7 chunks visited, 1792 blocks "  # full: every chunk copied whole
expect 0 check "$C" "$D"
ok "format of old files asks for a full sync; recover does it"

echo "$NAME: $pass passed, 0 failed"
