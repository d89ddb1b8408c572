#!/usr/bin/env bash
# mail.sh - the Mailboat workload (`catamaran bench mail`) on tmpfs, on a
# Catamaran FUSE mount and on ext4 mounted from a loop device over a file
# on the same disk, at 1 and 2 threads, interleaved; prints requests/s and
# the ratios: tmpfs against Mailboat's published figures (and `bench mail
# --bare` on tmpfs, the floor of a file-per-message store, against them),
# Catamaran against ext4-on-loop, Catamaran against tmpfs (README.md here).
#
# usage: tools/bench/mail.sh [DIR]      (DIR default: ./data/mailbench)
#
# env:   CATAMARAN        the binary (default: build/catamaran of this tree,
#                         then PATH)
#        THREADS          thread counts ["1 2"]
#        ROUNDS           interleaved rounds, medians reported [3]
#        ITER_TMPFS       iterations per thread on tmpfs [100000]
#        ITER_DISK        iterations per thread on Catamaran and ext4 [1000]
#        USERS            users [100]
#        SIZE             size of each of the three backing files [2G]
#        MAILBOAT_1, MAILBOAT_2   Mailboat's requests/s on tmpfs at 1 and 2
#                         threads on this class of machine [32000, 57000]
#        KEEP=1           keep the backing files afterwards
#
# Needs root (mount, losetup), /dev/fuse, mkfs.ext4 and jq; uses 3*SIZE of
# space in DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

dir=${1:-./data/mailbench}
THREADS=${THREADS:-1 2}
ROUNDS=${ROUNDS:-3}
ITER_TMPFS=${ITER_TMPFS:-100000}
ITER_DISK=${ITER_DISK:-1000}
USERS=${USERS:-100}
SIZE=${SIZE:-2G}
MAILBOAT_1=${MAILBOAT_1:-32000}
MAILBOAT_2=${MAILBOAT_2:-57000}
KEEP=${KEEP:-0}

find_catamaran
need_tools jq mkfs.ext4 losetup mount umount mountpoint numfmt
need_root "mount, losetup"
need_fuse
parse_size

use_bench_dir "$dir"
ext4_img=$dir/ext4.img
tmpfs_mnt=$dir/tmpfs
cat_mnt=$dir/catamaran
ext4_mnt=$dir/ext4
mkdir -p "$tmpfs_mnt" "$cat_mnt" "$ext4_mnt"

cleanup() {
	unmount_all "$tmpfs_mnt" "$cat_mnt" "$ext4_mnt"
	detach_loop
	remove_unless_keep "$d1" "$d2" "$ext4_img"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mailboat() { # THREADS: Mailboat's requests/s, or empty
	case $1 in
	1) echo "$MAILBOAT_1" ;;
	2) echo "$MAILBOAT_2" ;;
	*) echo "" ;;
	esac
}

# One measurement in a fresh directory of the mounted filesystem MNT;
# prints requests/s. The bench's own VERIFY makes a failed check fatal.
measure() { # NAME MNT THREADS ROUND ITERATIONS [BENCH OPTION...]
	local name=$1 mnt=$2 t=$3 round=$4 iter=$5 json
	shift 5
	json=$out/$name-t$t-r$round.json
	rm -rf "$mnt/run-t$t-r$round"
	mkdir "$mnt/run-t$t-r$round"
	if ! "$cat_bin" bench mail --json --threads "$t" --iterations "$iter" \
		--users "$USERS" "$@" "$mnt/run-t$t-r$round" >"$json"; then
		die "$name, $t threads, round $round: bench mail failed (see $json)"
	fi
	rm -rf "$mnt/run-t$t-r$round"
	jq '.requests_per_sec' "$json"
}

say "catamaran: $cat_bin"
say "backing files: $dir (3 x $SIZE, written in full first)"
fill "$d1" "$d2" "$ext4_img"
mount -t tmpfs -o size=1G,mode=0700 tmpfs "$tmpfs_mnt"
format_mirror_clean "$d1" "$d2" >"$out/format.out"
"$cat_bin" mount "$d1" "$d2" "$cat_mnt"
attach_loop "$ext4_img"
mount_new_ext4 "$ext4_mnt"
say "tmpfs: $tmpfs_mnt; Catamaran: $cat_mnt (FUSE); ext4: $loop over $ext4_img on $ext4_mnt"
say "Mailboat workload, $USERS users, iterations per thread: tmpfs $ITER_TMPFS," \
	"Catamaran and ext4 $ITER_DISK; $ROUNDS round(s); threads: $THREADS"
say "(a request = one delivery of 12 bytes + one pickup of a random user with its"
say " deletes and unlock, as Mailboat counts)"

declare -A tmpfs_rates bare_rates tmpfs_bare cat_rates ext4_rates cat_ext4 cat_tmpfs
for round in $(seq 1 "$ROUNDS"); do
	for t in $THREADS; do
		b=$(measure tmpfs-bare "$tmpfs_mnt" "$t" "$round" "$ITER_TMPFS" --bare)
		m=$(measure tmpfs "$tmpfs_mnt" "$t" "$round" "$ITER_TMPFS")
		c=$(measure catamaran "$cat_mnt" "$t" "$round" "$ITER_DISK")
		e=$(measure ext4 "$ext4_mnt" "$t" "$round" "$ITER_DISK")
		tmpfs_rates[$t]+="$m "
		bare_rates[$t]+="$b "
		tmpfs_bare[$t]+="$(ratio "$m" "$b") "
		cat_rates[$t]+="$c "
		ext4_rates[$t]+="$e "
		cat_ext4[$t]+="$(ratio "$c" "$e") "
		# 4 decimals: Catamaran / tmpfs is small
		cat_tmpfs[$t]+="$(ratio "$c" "$m" 4) "
		printf '    round %s, %s thread(s): tmpfs %9.1f/s (bare %9.1f/s)  catamaran %8.1f/s  ext4 %8.1f/s\n' \
			"$round" "$t" "$m" "$b" "$c" "$e"
	done
done

say ""
say "Summary: requests/s, median of $ROUNDS round(s)"
printf '  %7s %10s %9s %8s %10s %8s %11s %9s %14s %16s\n' threads tmpfs/s mailboat "x mb" \
	bare/s "x bare" catamaran/s ext4/s catamaran/ext4 catamaran/tmpfs
for t in $THREADS; do
	m=$(med "${tmpfs_rates[$t]}")
	b=$(med "${bare_rates[$t]}")
	mb=$(mailboat "$t")
	printf '  %7s %10.1f %9s %8s %10.1f %8s %11.1f %9.1f %14s %16s\n' "$t" "$m" "${mb:-n/a}" \
		"$(ratio "$m" "$mb")" "$b" "$(ratio "$b" "$mb")" "$(med "${cat_rates[$t]}")" \
		"$(med "${ext4_rates[$t]}")" "$(med "${cat_ext4[$t]}")" "$(med "${cat_tmpfs[$t]}")"
done
say "(x mb: tmpfs / Mailboat's figure, the target is >= 2; bare: \`bench mail --bare\`"
say " on tmpfs, Mailboat's file operations alone - no fsync, no lock file, no"
say " move to cur/ - and x bare its ratio to Mailboat: the ceiling for any store"
say " that keeps a file per message; catamaran/ext4 and catamaran/tmpfs: medians"
say " of the per-round ratios)"
say "Raw results: $out"
