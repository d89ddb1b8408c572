#!/usr/bin/env bash
# fs.sh - Maildir deliveries on Catamaran's filesystem (in-process, on the
# mirror over two files) against the same deliveries with ordinary system
# calls on ext4 mounted from a loop device over a file on the same disk, for
# 1, 2, 8 and 32 threads, interleaved; prints a table with the ratios
# (README.md here).
#
# usage: tools/bench/fs.sh [DIR]        (DIR default: ./data/fsbench)
#
# env:   CATAMARAN  the binary (default: build/catamaran of this tree, then PATH)
#        SECONDS    seconds per measurement [10] (taken from the environment
#                   the script was started with: inside bash, SECONDS is the
#                   shell's own clock)
#        THREADS    thread counts ["1 2 8 32"]
#        SIZE       size of each of the three backing files [2G]
#        MSG_SIZE   message size [4K]
#        ROUNDS     interleaved catamaran/ext4 rounds, median reported [1]:
#                   the host disk's speed drifts by 2-3x within a minute
#                   here, so one back-to-back pair can mislead
#        KEEP=1     keep the backing files afterwards
#
# Needs root (losetup, mount), mkfs.ext4 and jq; uses 3*SIZE of space in DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

run_seconds=$(inherited_seconds 10)
dir=${1:-./data/fsbench}
THREADS=${THREADS:-1 2 8 32}
SIZE=${SIZE:-2G}
MSG_SIZE=${MSG_SIZE:-4K}
ROUNDS=${ROUNDS:-1}
KEEP=${KEEP:-0}

find_catamaran
need_tools jq mkfs.ext4 losetup mount umount mountpoint numfmt
need_root "losetup, mount"
parse_size

use_bench_dir "$dir"
ext4_img=$dir/ext4.img
mnt=$dir/mnt
mkdir -p "$mnt"

cleanup() {
	unmount_all "$mnt"
	detach_loop
	remove_unless_keep "$d1" "$d2" "$ext4_img"
}
trap cleanup EXIT
# Ctrl-C also reaches the bench, which ends its run cleanly and exits 0:
# stop the script too instead of going on with the next measurement.
trap 'exit 130' INT TERM

# One measurement on a fresh filesystem each: the delivered messages stay in
# new/, and the next measurement should not inherit them (nor run out of
# inodes).
result() { # catamaran|ext4 THREADS ROUND: the JSON file of that run
	echo "$out/$1-t$2-r$3.json"
}

run_catamaran() { # THREADS ROUND
	local json
	json=$(result catamaran "$1" "$2")
	format_mirror_clean "$d1" "$d2" >"$out/format.out"
	"$cat_bin" bench fs --json --threads "$1" --seconds "$run_seconds" \
		--size "$MSG_SIZE" "$d1" "$d2" >"$json"
}

run_ext4() { # THREADS ROUND
	local json
	json=$(result ext4 "$1" "$2")
	mount_new_ext4 "$mnt"
	"$cat_bin" bench maildir --json --threads "$1" --seconds "$run_seconds" \
		--size "$MSG_SIZE" "$mnt" >"$json"
	umount "$mnt"
}

say "catamaran: $cat_bin"
say "backing files: $dir (3 x $SIZE, written in full first)"
fill "$d1" "$d2" "$ext4_img"
attach_loop "$ext4_img"
say "ext4: $loop over $ext4_img, mounted on $mnt with default options"
say "Maildir deliveries of $MSG_SIZE, ${run_seconds}s each, $ROUNDS round(s), threads: $THREADS"

declare -A cat_rates ext4_rates opc dpc ratios
for round in $(seq 1 "$ROUNDS"); do
	for t in $THREADS; do
		run_catamaran "$t" "$round"
		run_ext4 "$t" "$round"
		cj=$(result catamaran "$t" "$round")
		ej=$(result ext4 "$t" "$round")
		c=$(jq '.deliveries_per_sec' "$cj")
		e=$(jq '.deliveries_per_sec' "$ej")
		o=$(jq '.journal.ops_per_commit' "$cj")
		d=$(jq '.journal.deliveries_per_commit' "$cj")
		r=$(ratio "$c" "$e")
		cat_rates[$t]+="$c "
		ext4_rates[$t]+="$e "
		opc[$t]+="$o "
		dpc[$t]+="$d "
		ratios[$t]+="$r "
		printf '    round %s, %2s threads: catamaran %8.1f/s (%.1f ops/commit, %.2f deliveries/commit);' \
			"$round" "$t" "$c" "$o" "$d"
		printf ' ext4 %8.1f/s: ratio %s\n' "$e" "$r"
	done
done

say ""
say "Summary: Maildir deliveries/s, $MSG_SIZE messages (median of $ROUNDS round(s) of ${run_seconds}s)"
printf '  %7s %13s %11s %13s %11s %7s\n' threads catamaran/s ops/commit deliv/commit ext4/s ratio
for t in $THREADS; do
	printf '  %7s %13.1f %11.1f %13.2f %11.1f %7s\n' "$t" "$(med "${cat_rates[$t]}")" \
		"$(med "${opc[$t]}")" "$(med "${dpc[$t]}")" "$(med "${ext4_rates[$t]}")" \
		"$(med "${ratios[$t]}")"
done
say "Raw results: $out"
