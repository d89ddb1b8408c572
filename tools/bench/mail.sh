#!/usr/bin/env bash
# mail.sh - the Mailboat workload (`catamaran bench mail`) on tmpfs, on a
# Catamaran FUSE mount and on ext4 mounted from a loop device over a file
# on the same disk, at 1 and 2 threads, interleaved; prints requests/s and
# the ratios: tmpfs against Mailboat's published figures, Catamaran against
# ext4-on-loop, Catamaran against tmpfs (README.md here).
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
repo=$(cd "$here/../.." && pwd)
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

die() { echo "mail.sh: $*" >&2; exit 2; }

find_catamaran() {
	if [ -n "${CATAMARAN:-}" ]; then
		echo "$CATAMARAN"
	elif [ -x "$repo/build/catamaran" ]; then
		echo "$repo/build/catamaran"
	else
		command -v catamaran
	fi
}
cat_bin=$(find_catamaran) || die "no catamaran binary (set CATAMARAN)"
for tool in jq mkfs.ext4 losetup mount umount mountpoint numfmt; do
	command -v "$tool" >/dev/null || die "$tool is needed"
done
[ "$(id -u)" = 0 ] || die "needs root (mount, losetup)"
[ -c /dev/fuse ] || die "needs /dev/fuse"
size_bytes=$(numfmt --from=iec "$SIZE") || die "SIZE: not a size: $SIZE"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
d1=$dir/disk1.img
d2=$dir/disk2.img
ext4_img=$dir/ext4.img
tmpfs_mnt=$dir/tmpfs
cat_mnt=$dir/catamaran
ext4_mnt=$dir/ext4
out=$dir/out
mkdir -p "$out" "$tmpfs_mnt" "$cat_mnt" "$ext4_mnt"
loop=

cleanup() {
	for m in "$tmpfs_mnt" "$cat_mnt" "$ext4_mnt"; do
		if mountpoint -q "$m"; then
			umount "$m" || echo "mail.sh: cannot unmount $m" >&2
		fi
	done
	if [ -n "$loop" ]; then
		losetup -d "$loop" || echo "mail.sh: cannot detach $loop" >&2
	fi
	if [ "$KEEP" != 1 ]; then
		rm -f "$d1" "$d2" "$ext4_img"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
# ratio A B: A / B, 2 decimals ("n/a" when B is 0 or empty)
ratio() {
	awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
}
# ratio4 A B: the same with 4 decimals (Catamaran / tmpfs is small)
ratio4() {
	awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.4f", a / b }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# med "V1 V2 ...": the median of a space-separated list
med() {
	local -a v
	read -ra v <<<"$1"
	printf '%s\n' "${v[@]}" | median
}

# Write every byte of a backing file first, so that neither Catamaran nor
# ext4 pays for converting unwritten (fallocated) extents of the host
# filesystem on its first writes.
fill() { # FILE
	rm -f "$1"
	dd if=/dev/zero of="$1" bs=1M count=$((size_bytes / 1048576)) oflag=direct \
		conv=fsync status=none
}

mailboat() { # THREADS: Mailboat's requests/s, or empty
	case $1 in
	1) echo "$MAILBOAT_1" ;;
	2) echo "$MAILBOAT_2" ;;
	*) echo "" ;;
	esac
}

# One measurement in a fresh directory of the mounted filesystem MNT;
# prints requests/s. The bench's own VERIFY makes a failed check fatal.
measure() { # NAME MNT THREADS ROUND ITERATIONS
	local name=$1 mnt=$2 t=$3 round=$4 iter=$5 json
	json=$out/$name-t$t-r$round.json
	rm -rf "$mnt/run-t$t-r$round"
	mkdir "$mnt/run-t$t-r$round"
	if ! "$cat_bin" bench mail --json --threads "$t" --iterations "$iter" \
		--users "$USERS" "$mnt/run-t$t-r$round" >"$json"; then
		die "$name, $t threads, round $round: bench mail failed (see $json)"
	fi
	rm -rf "$mnt/run-t$t-r$round"
	jq '.requests_per_sec' "$json"
}

say "catamaran: $cat_bin"
say "backing files: $dir (3 x $SIZE, written in full first)"
fill "$d1"
fill "$d2"
fill "$ext4_img"
mount -t tmpfs -o size=1G,mode=0700 tmpfs "$tmpfs_mnt"
"$cat_bin" format --force --assume-clean "$d1" "$d2" >"$out/format.out"
"$cat_bin" mount "$d1" "$d2" "$cat_mnt"
loop=$(losetup --find --show "$ext4_img")
# Inode tables and journal zeroed now, not by ext4lazyinit during the run.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
mount "$loop" "$ext4_mnt"
say "tmpfs: $tmpfs_mnt; Catamaran: $cat_mnt (FUSE); ext4: $loop over $ext4_img on $ext4_mnt"
say "Mailboat workload, $USERS users, iterations per thread: tmpfs $ITER_TMPFS," \
	"Catamaran and ext4 $ITER_DISK; $ROUNDS round(s); threads: $THREADS"
say "(a request = one delivery of 12 bytes + one pickup of a random user with its"
say " deletes and unlock, as Mailboat counts)"

declare -A tmpfs_rates cat_rates ext4_rates cat_ext4 cat_tmpfs
for round in $(seq 1 "$ROUNDS"); do
	for t in $THREADS; do
		m=$(measure tmpfs "$tmpfs_mnt" "$t" "$round" "$ITER_TMPFS")
		c=$(measure catamaran "$cat_mnt" "$t" "$round" "$ITER_DISK")
		e=$(measure ext4 "$ext4_mnt" "$t" "$round" "$ITER_DISK")
		tmpfs_rates[$t]+="$m "
		cat_rates[$t]+="$c "
		ext4_rates[$t]+="$e "
		cat_ext4[$t]+="$(ratio "$c" "$e") "
		cat_tmpfs[$t]+="$(ratio4 "$c" "$m") "
		printf '    round %s, %s thread(s): tmpfs %9.1f/s  catamaran %8.1f/s  ext4 %8.1f/s\n' \
			"$round" "$t" "$m" "$c" "$e"
	done
done

say ""
say "Summary: requests/s, median of $ROUNDS round(s)"
printf '  %7s %10s %9s %8s %11s %9s %14s %16s\n' threads tmpfs/s mailboat "x mb" \
	catamaran/s ext4/s catamaran/ext4 catamaran/tmpfs
for t in $THREADS; do
	m=$(med "${tmpfs_rates[$t]}")
	mb=$(mailboat "$t")
	printf '  %7s %10.1f %9s %8s %11.1f %9.1f %14s %16s\n' "$t" "$m" "${mb:-n/a}" \
		"$(ratio "$m" "$mb")" "$(med "${cat_rates[$t]}")" "$(med "${ext4_rates[$t]}")" \
		"$(med "${cat_ext4[$t]}")" "$(med "${cat_tmpfs[$t]}")"
done
say "(x mb: tmpfs / Mailboat's figure, the target is >= 2; catamaran/ext4 and"
say " catamaran/tmpfs: medians of the per-round ratios)"
say "Raw results: $out"
