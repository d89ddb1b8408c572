#!/usr/bin/env bash
# kill9_verify.sh - kill -9 of a process writing to the mirror loses no
# acknowledged write and leaves no value that was never written.
#
# Each round: `bench blockdev --verify LOG` writes self-describing blocks and
# logs every write a completed flush made durable; it is killed with SIGKILL
# after a random 0.2-1.5 s; then `recover` must bring the disks in sync,
# `check` must find them identical, and `bench blockdev --check LOG` must
# find every logged write (or a later one) in place. One LOG per round: each
# run has its own run id, and blocks of earlier rounds stay valid.
#
# usage: kill9_verify.sh PATH_TO_CATAMARAN
# env:   CATAMARAN_KILL_ROUNDS (default 10)
set -u

cat_bin=${1:?usage: kill9_verify.sh PATH_TO_CATAMARAN}
rounds=${CATAMARAN_KILL_ROUNDS:-10}
dir=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-kill9.XXXXXX") || exit 2
bench_pid=

cleanup() {
	if [ -n "$bench_pid" ]; then
		kill -9 "$bench_pid" 2>/dev/null
		wait "$bench_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

disk1=$dir/disk1.img
disk2=$dir/disk2.img

if ! "$cat_bin" format --no-fs --size 64M "$disk1" "$disk2" >"$dir/format.out" 2>&1; then
	cat "$dir/format.out"
	echo "kill9_verify: format failed"
	exit 1
fi

# Print the output of a step that failed, indented.
show() {
	sed 's/^/    | /' "$1"
}

# A random delay of 0.200 to 1.500 seconds, as text for sleep(1).
random_delay() {
	local ms=$((200 + RANDOM % 1301))
	printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# A killed process keeps its disks locked for a few ms after wait(): the
# kernel tears its io_uring down asynchronously, and the ring holds file
# references (so the flock) until its in-flight requests end. Wait for the
# lock uring_disk takes (flock) before the next command opens the disks.
wait_disks_released() {
	flock -w 10 "$disk1" true && flock -w 10 "$disk2" true
}

# One round; returns 0 when every check passed.
run_round() {
	local round=$1 log=$dir/round$1.log
	: >"$log" # the bench refuses a log that holds an earlier run
	"$cat_bin" bench blockdev --verify "$log" --seconds 30 --threads 2 \
		"$disk1" "$disk2" >"$dir/bench.out" 2>&1 &
	bench_pid=$!
	local delay
	delay=$(random_delay)
	sleep "$delay"
	kill -9 "$bench_pid" 2>/dev/null
	wait "$bench_pid" 2>/dev/null # no "Killed" notice from bash
	local bench_rc=$?
	bench_pid=
	if ! wait_disks_released; then
		echo "round $round: the disks are still locked 10 s after the kill"
		return 1
	fi
	if [ "$bench_rc" -ne 137 ]; then
		echo "round $round: bench ended by itself (exit $bench_rc) before the kill"
		show "$dir/bench.out"
		return 1
	fi
	local acked
	acked=$(($(grep -c '' "$log") - 1))
	[ "$acked" -lt 0 ] && acked=0

	if ! "$cat_bin" recover "$disk1" "$disk2" >"$dir/recover.out" 2>&1; then
		echo "round $round: recover failed (killed after ${delay}s)"
		show "$dir/recover.out"
		return 1
	fi
	if ! "$cat_bin" check "$disk1" "$disk2" >"$dir/check.out" 2>&1; then
		echo "round $round: check found the disks different after recover"
		show "$dir/check.out"
		return 1
	fi
	if ! "$cat_bin" bench blockdev --check "$log" "$disk1" "$disk2" >"$dir/verify.out" 2>&1; then
		echo "round $round: bench --check found lost or invented data"
		show "$dir/verify.out"
		return 1
	fi
	echo "round $round: killed after ${delay}s, $acked acknowledged writes: recover, check, verify ok"
	return 0
}

passed=0
failed=0
for round in $(seq 1 "$rounds"); do
	if run_round "$round"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done

echo "kill9_verify: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
