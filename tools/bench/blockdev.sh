#!/usr/bin/env bash
# blockdev.sh - Catamaran's mirror against fio and dd on the same backing
# files, in one run; prints each ratio and a final table (README.md here).
#
# usage: tools/bench/blockdev.sh [DIR]        (DIR default: ./data/bench)
#
# env:   CATAMARAN    the binary (default: build/catamaran of this tree, then PATH)
#        SIZE         backing file size for (a)-(c) and the small volume of (d) [1G]
#        BIG_SIZE     the large volume of (d) [8G]
#        THREADS, QD  submitting threads and queue depth per thread [2, 16]
#        RUNTIME      seconds per load measurement [15]
#        FLUSH_EVERY  writes per flush, per worker / per fio job [16]
#        KILL_AFTER   seconds of load before the kill -9 in (d) [3]
#        REPEAT       kill/recover cycles per volume in (d), median taken [3]
#        ROUNDS       interleaved catamaran/fio rounds in (a) and (b), median
#                     ratio reported [3]: the host disk's speed drifts by 2-3x
#                     within a minute here, so one back-to-back pair misleads
#        KEEP=1       keep the backing files afterwards
#
# Needs root only if DIR needs it; needs fio (with io_uring) and jq. Uses about
# 2*SIZE + 2*SIZE + 2*BIG_SIZE of disk space in DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

dir=${1:-./data/bench}
SIZE=${SIZE:-1G}
BIG_SIZE=${BIG_SIZE:-8G}
THREADS=${THREADS:-2}
QD=${QD:-16}
RUNTIME=${RUNTIME:-15}
FLUSH_EVERY=${FLUSH_EVERY:-16}
KILL_AFTER=${KILL_AFTER:-3}
REPEAT=${REPEAT:-3}
ROUNDS=${ROUNDS:-3}
KEEP=${KEEP:-0}

find_catamaran
need_tools fio jq flock

use_bench_dir "$dir"
bench_pid=

cleanup() {
	if [ -n "$bench_pid" ]; then
		kill -9 "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	remove_unless_keep "$dir"/disk*.img "$dir"/small*.img "$dir"/big*.img
}
trap cleanup EXIT

# elapsed START: seconds since START, 3 decimals
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# verdict VALUE OP TARGET: "ok" or "MISSED"
verdict() {
	awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {
		ok = (op == ">=") ? (v >= t) : (v <= t)
		print (v == "n/a" ? "n/a" : ok ? "ok" : "MISSED") }'
}

# A killed process holds its disks' flock until the kernel has torn its
# io_uring down (a few ms after wait returns).
wait_released() {
	flock -w 10 "$1" true && flock -w 10 "$2" true
}

# Data area of a formatted pair, in bytes: sets data_off and data_len.
data_area() {
	local json
	json=$("$cat_bin" status --json "$1" "$2" || true)
	data_off=$(($(jq '.disks[0].data_offset' <<<"$json") * 4096))
	data_len=$(($(jq '.disks[0].data_blocks' <<<"$json") * 4096))
}

# Write every byte of both files first, so that neither side of a
# comparison reads unwritten (zero-filled, I/O-free) extents or pays for
# converting them on first write.
precondition() {
	fio --output="$out/fill.json" --output-format=json --ioengine=io_uring \
		--direct=1 --rw=write --bs=1M --iodepth=8 --size="$SIZE" \
		--name=fill1 --filename="$d1" --name=fill2 --filename="$d2" >/dev/null
}

cat_bench() { # PATTERN EXTRA-ARGS...: prints IOPS
	local pattern=$1
	shift
	"$cat_bin" bench blockdev --json --pattern "$pattern" --bs 4K --threads "$THREADS" \
		--qd "$QD" --seconds "$RUNTIME" "$@" "$d1" "$d2" >"$out/cat-$pattern.json"
	jq '.iops' "$out/cat-$pattern.json"
}

# fio over the data area of the given files; prints the IOPS summed over jobs.
fio_iops() { # RW NUMJOBS IODEPTH FIO-ARGS... -- FILES...
	local rw=$1 numjobs=$2 iodepth=$3 args=() jobs=()
	shift 3
	while [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	for f in "$@"; do jobs+=(--name="$(basename "$f")" --filename="$f"); done
	fio --output="$out/fio-$rw.json" --output-format=json --thread --ioengine=io_uring \
		--direct=1 --rw="$rw" --bs=4k --numjobs="$numjobs" --iodepth="$iodepth" \
		--time_based --runtime="$RUNTIME" --offset="$data_off" --size="$data_len" \
		--randrepeat=0 "${args[@]}" "${jobs[@]}" >/dev/null
	local dir_key=read
	[ "$rw" = randwrite ] && dir_key=write
	jq "[.jobs[].$dir_key.iops] | add" "$out/fio-$rw.json"
}

# ---- (a) 4K random writes ---------------------------------------------------
# Catamaran: THREADS*QD workers, each with one write in flight, each flushing
# the mirror after FLUSH_EVERY of its writes (one mirror flush = one
# fdatasync per leg). fio, the same on each backing file, both files at
# once: THREADS*QD jobs (threads) at iodepth 1, fdatasync=FLUSH_EVERY. So
# both keep THREADS*QD writes in flight per file and issue one fdatasync per
# FLUSH_EVERY writes on each file. (Not THREADS jobs at iodepth QD: fio 3.33
# then syncs far more often than asked -- measured 1 per 2.7 writes at
# iodepth 16 with fdatasync=16 -- which would flatter the ratio.) A mirror
# write is one write on each file, so the reference rate is fio's per-file
# rate: the sum over both files / 2.
bench_randwrite() {
	local workers=$((THREADS * QD)) ratios=() fio_total per_sync
	say "(a) 4K randwrite, $THREADS threads x QD $QD, flush every $FLUSH_EVERY writes, ${RUNTIME}s each, $ROUNDS rounds"
	for round in $(seq 1 "$ROUNDS"); do
		cat_w=$(cat_bench randwrite --flush-every "$FLUSH_EVERY")
		fio_total=$(fio_iops randwrite "$workers" 1 --fdatasync="$FLUSH_EVERY" -- "$d1" "$d2")
		per_sync=$(jq '([.jobs[].write.total_ios] | add) / ([.jobs[].sync.lat_ns.N] | add) * 10 | round / 10' \
			"$out/fio-randwrite.json")
		fio_w=$(awk -v t="$fio_total" 'BEGIN { printf "%.0f", t / 2 }')
		ratios+=("$(ratio "$cat_w" "$fio_w")")
		say "    round $round: catamaran $(printf '%.0f' "$cat_w") IOPS; fio $fio_w IOPS per file" \
		    "($workers jobs x QD 1 per file, both files at once, $per_sync writes per fdatasync): ratio ${ratios[-1]}"
	done
	ratio_w=$(printf '%s\n' "${ratios[@]}" | median)
	say "    median ratio $ratio_w"
}

# ---- (b) 4K random reads ----------------------------------------------------
# The reference is fio reading one backing file (the mirror spreads reads
# over both legs by 1 MiB region, which is its advantage). Two fio forms:
#  - the same concurrency model as Catamaran's bench: THREADS*QD jobs, each
#    with one request in flight (this is the ratio judged against the target);
#  - fio at its best: THREADS jobs with a real asynchronous queue of QD,
#    which Catamaran's synchronous per-request API cannot batch (shown too).
bench_randread() {
	local workers=$((THREADS * QD)) fio_async ratios=() ratios_async=()
	say "(b) 4K randread, $THREADS threads x QD $QD, ${RUNTIME}s each, $ROUNDS rounds"
	for round in $(seq 1 "$ROUNDS"); do
		cat_r=$(cat_bench randread)
		fio_r=$(printf '%.0f' "$(fio_iops randread "$workers" 1 -- "$d1")")
		fio_async=$(printf '%.0f' "$(fio_iops randread "$THREADS" "$QD" -- "$d1")")
		ratios+=("$(ratio "$cat_r" "$fio_r")")
		ratios_async+=("$(ratio "$cat_r" "$fio_async")")
		say "    round $round: catamaran $(printf '%.0f' "$cat_r") IOPS; fio on disk 1: $fio_r IOPS" \
		    "($workers jobs x QD 1): ratio ${ratios[-1]}; $fio_async IOPS ($THREADS jobs x QD $QD, async): ratio ${ratios_async[-1]}"
	done
	ratio_r=$(printf '%s\n' "${ratios[@]}" | median)
	ratio_r_async=$(printf '%s\n' "${ratios_async[@]}" | median)
	say "    median ratios $ratio_r (same model), $ratio_r_async (async)"
}

# ---- (c) full rebuild -------------------------------------------------------
# Disk 2's data area is zeroed behind the mirror's back, so `recover --full`
# (a full resync copies every chunk whole) copies all of it. Reference:
# dd copying the same bytes disk 1 -> disk 2 with O_DIRECT, 1 MiB at a time,
# fdatasync at the end. Ratio = rebuild throughput / dd throughput.
bench_rebuild() {
	local mib=$((data_len / 1048576))
	say "(c) full rebuild of $mib MiB"
	fio --output="$out/zero.json" --output-format=json --ioengine=io_uring --direct=1 \
		--rw=write --bs=1M --iodepth=8 --zero_buffers --offset="$data_off" \
		--size="$data_len" --name=zero --filename="$d2" >/dev/null
	local t0
	t0=$(now)
	"$cat_bin" recover --full "$d1" "$d2" >"$out/recover-full.out" 2>&1
	t_rebuild=$(elapsed "$t0")
	t0=$(now)
	dd if="$d1" of="$d2" bs=1M iflag=direct,skip_bytes,count_bytes oflag=direct,seek_bytes \
		skip="$data_off" seek="$data_off" count="$data_len" conv=notrunc,fdatasync \
		status=none
	t_dd=$(elapsed "$t0")
	ratio_c=$(ratio "$t_dd" "$t_rebuild")
	local check=identical
	"$cat_bin" check "$d1" "$d2" >"$out/check.out" 2>&1 || check="DIFFERENT (see $out/check.out)"
	say "    recover --full ${t_rebuild}s ($(ratio "$mib" "$t_rebuild") MiB/s);" \
	    "dd ${t_dd}s ($(ratio "$mib" "$t_dd") MiB/s): ratio $ratio_c; disks $check"
}

# ---- (d) recovery after kill -9 ---------------------------------------------
# Random writes confined to the first 64 MiB (written in full beforehand, so
# no unwritten extents), SIGKILL after KILL_AFTER seconds, then `recover`
# (bitmap-driven) is timed; its time should not grow with the volume size.
# The median of REPEAT kill/recover cycles per volume is taken: one sample
# is at the mercy of whatever else the machine does. `recover --full` is
# timed once beside it, for scale.

kill_once() { # A B NAME: prints the time of `recover`
	local a=$1 b=$2 name=$3
	"$cat_bin" bench blockdev --pattern randwrite --span 64M --threads "$THREADS" \
		--qd "$QD" --seconds 0 "$a" "$b" >"$out/kill-$name.out" 2>&1 &
	bench_pid=$!
	sleep "$KILL_AFTER"
	kill -9 "$bench_pid"
	wait "$bench_pid" 2>/dev/null || true
	bench_pid=
	wait_released "$a" "$b"
	"$cat_bin" status --json "$a" "$b" >"$out/status-$name.json" || true
	local t0
	t0=$(now)
	"$cat_bin" recover "$a" "$b" >>"$out/recover-$name.out" 2>&1
	elapsed "$t0"
	"$cat_bin" check "$a" "$b" >"$out/check-$name.out" 2>&1 ||
		say "    $name: disks DIFFER after recover (see $out/check-$name.out)" >&2
}

kill_and_recover() { # NAME SIZE: sets t_recover_NAME, t_full_NAME
	local name=$1 size=$2 a=$dir/$1-1.img b=$dir/$1-2.img
	rm -f "$a" "$b" "$out/recover-$name.out"
	"$cat_bin" format --no-fs --size "$size" "$a" "$b" >"$out/format-$name.out"
	data_area "$a" "$b"
	# The same bytes on both legs (a fixed pattern, not zeros that a
	# hypervisor might turn into holes): the mirror is in sync again after.
	fio --output="$out/span-$name.json" --output-format=json --ioengine=io_uring \
		--direct=1 --rw=write --bs=1M --iodepth=8 --offset="$data_off" --size=64M \
		--buffer_pattern=0x4341544d \
		--name=span1 --filename="$a" --name=span2 --filename="$b" >/dev/null
	local times=() stale
	for _ in $(seq 1 "$REPEAT"); do
		times+=("$(kill_once "$a" "$b" "$name")")
	done
	stale=$(jq '.stale_chunks' "$out/status-$name.json")
	local t_rec t0 t_full
	t_rec=$(printf '%s\n' "${times[@]}" | median)
	t0=$(now)
	"$cat_bin" recover --full "$a" "$b" >"$out/recover-full-$name.out" 2>&1
	t_full=$(elapsed "$t0")
	printf -v "t_recover_$name" '%s' "$t_rec"
	printf -v "t_full_$name" '%s' "$t_full"
	say "    $size volume: $stale stale chunks; recover ${times[*]} s (median ${t_rec}s);" \
	    "recover --full ${t_full}s"
	rm -f "$a" "$b"
}

bench_kill_recover() {
	say "(d) recover after kill -9 under 4K randwrite on a 64 MiB span (${KILL_AFTER}s of load)"
	kill_and_recover small "$SIZE"
	kill_and_recover big "$BIG_SIZE"
	ratio_d=$(ratio "$t_recover_big" "$t_recover_small")
	say "    recover time $BIG_SIZE / $SIZE: ratio $ratio_d"
}

print_table() {
	local under1
	under1=$(awk -v a="$t_recover_small" -v b="$t_recover_big" 'BEGIN { print (a < 1 && b < 1) ? "ok" : "MISSED" }')
	say ""
	say "Summary ($(basename "$cat_bin") vs reference, $THREADS threads x QD $QD, bs 4K)"
	printf '  %-34s %8s  %-10s %s\n' "measure" "ratio" "target" "result"
	printf '  %-34s %8s  %-10s %s\n' "(a) randwrite IOPS / fio per file" "$ratio_w" ">= 0.9" "$(verdict "$ratio_w" ">=" 0.9)"
	printf '  %-34s %8s  %-10s %s\n' "(b) randread IOPS / fio one file" "$ratio_r" ">= 1.0" "$(verdict "$ratio_r" ">=" 1.0)"
	printf '  %-34s %8s  %-10s %s\n' "    same, fio async ${THREADS}x QD $QD" "$ratio_r_async" "(info)" ""
	printf '  %-34s %8s  %-10s %s\n' "(c) rebuild MB/s / dd MB/s" "$ratio_c" ">= 0.8" "$(verdict "$ratio_c" ">=" 0.8)"
	printf '  %-34s %8s  %-10s %s\n' "(d) recover $BIG_SIZE / $SIZE time" "$ratio_d" "<= 1.5" "$(verdict "$ratio_d" "<=" 1.5)"
	printf '  %-34s %8s  %-10s %s\n' "    recover times ${t_recover_small}s, ${t_recover_big}s" "" "< 1 s" "$under1"
	printf '  %-34s %8s\n' "    recover --full ${t_full_small}s, ${t_full_big}s" ""
	say "Raw results: $out"
}

say "catamaran: $cat_bin"
say "backing files: $dir ($SIZE each; $BIG_SIZE for the large volume)"
rm -f "$d1" "$d2"
precondition
"$cat_bin" format --no-fs --force "$d1" "$d2" >"$out/format.out"
"$cat_bin" recover "$d1" "$d2" >"$out/recover-initial.out" 2>&1
data_area "$d1" "$d2"
bench_randwrite
bench_randread
bench_rebuild
rm -f "$d1" "$d2"
bench_kill_recover
print_table
