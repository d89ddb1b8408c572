#!/usr/bin/env bash
# loopdev_pull.sh - a disk vanishes under load; the mirror keeps serving
# from the other one and loses no acknowledged write.
#
# Disk 1 is a loop device over a 64 MiB file, disk 2 a plain file. While
# `bench blockdev --verify LOG` runs, the loop's backing file is truncated to
# zero and the loop device resized (`losetup -c`): from then on every I/O to
# disk 1 fails, as when a disk is pulled. The bench must finish with exit 0,
# `status` must show disk 2 authoritative and disk 1 failed or unreadable,
# and `bench blockdev --check LOG --degraded` must find every acknowledged
# write on disk 2.
#
# usage: loopdev_pull.sh PATH_TO_CATAMARAN
set -u

cat_bin=${1:?usage: loopdev_pull.sh PATH_TO_CATAMARAN}

skip() {
	echo "SKIP: $*"
	exit 0
}

command -v losetup >/dev/null 2>&1 || skip "losetup is not installed"
[ "$(id -u)" -eq 0 ] || skip "loop devices need root"

dir=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-pull.XXXXXX") || exit 2
loop=
bench_pid=

cleanup() {
	if [ -n "$bench_pid" ]; then
		kill -9 "$bench_pid" 2>/dev/null
		wait "$bench_pid" 2>/dev/null
	fi
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$dir"
}
trap cleanup EXIT

fail() {
	echo "loopdev_pull: FAILED: $*"
	for f in "$dir"/*.out; do
		[ -s "$f" ] || continue
		echo "  --- $(basename "$f")"
		sed 's/^/    | /' "$f"
	done
	exit 1
}

backing=$dir/loop-backing.img
disk2=$dir/disk2.img
log=$dir/acked.log

fallocate -l 64M "$backing" 2>/dev/null || truncate -s 64M "$backing" || exit 2
# Direct I/O on the backing file when this losetup/kernel can (no page cache
# between the loop device and the file, as with a real disk).
loop=$(losetup -f --show --direct-io=on "$backing" 2>/dev/null) ||
	loop=$(losetup -f --show "$backing" 2>/dev/null) ||
	skip "cannot attach a loop device"
echo "disk 1: $loop over $backing; disk 2: $disk2"

"$cat_bin" format --no-fs --size 64M "$loop" "$disk2" >"$dir/format.out" 2>&1 ||
	fail "format"

"$cat_bin" bench blockdev --verify "$log" --seconds 6 --threads 2 \
	"$loop" "$disk2" >"$dir/bench.out" 2>&1 &
bench_pid=$!
sleep 1.5

# Pull disk 1. The bench is frozen for the instant of the pull: a write
# that reached the loop device between the truncate and `losetup -c` would
# grow the backing file again, and the loop would come back with that size
# instead of vanishing. (truncate waits for direct I/O in flight; the
# frozen process submits nothing new; uring_disk retries the EINTR that
# SIGSTOP/SIGCONT leave in an io_uring wait.)
# A write already executing in the kernel's io_uring workers is not stopped
# by SIGSTOP and may still grow the file once; a pulled disk stays pulled,
# so repeat the pull (at most 5 times) until the device is really empty.
kill -STOP "$bench_pid" || fail "bench died before the pull"
for attempt in 1 2 3 4 5; do
	truncate -s 0 "$backing" || fail "truncate of the backing file"
	losetup -c "$loop" || fail "losetup -c"
	size=$(blockdev --getsize64 "$loop")
	[ "$size" -eq 0 ] && break
	sleep 0.1
done
kill -CONT "$bench_pid"
[ "$size" -eq 0 ] || fail "the loop device still has $size bytes after 5 pulls"
echo "disk 1 pulled at 1.5 s"

wait "$bench_pid"
bench_rc=$?
bench_pid=
[ "$bench_rc" -eq 0 ] || fail "bench exited with $bench_rc after the pull (want 0)"
sed -n '1,/^  total/p' "$dir/bench.out" | tail -n 2

# status exits 1 for a degraded array: that is expected here.
"$cat_bin" status --json "$loop" "$disk2" >"$dir/status.out" 2>"$dir/status.err"
grep -q '"authoritative": 2' "$dir/status.out" ||
	fail "status does not name disk 2 authoritative"
grep -Eq '"opened": false|"superblock_valid": false' "$dir/status.out" ||
	fail "status does not show disk 1 unreadable"
# Disk 2's own superblock must record disk 1 (member 0) as failed: the mirror
# noticed the loss while it ran, not just status now.
grep -q '"member_states": \["failed", "in-sync"\]' "$dir/status.out" ||
	fail "disk 2's superblock does not record disk 1 as failed"
echo "status: disk 1 failed/unreadable, disk 2 authoritative"

"$cat_bin" bench blockdev --check "$log" --degraded "$loop" "$disk2" >"$dir/verify.out" 2>&1 ||
	fail "bench --check on the surviving disk"
cat "$dir/verify.out"
echo "loopdev_pull: passed"
