#!/usr/bin/env bash
# mail_clients.sh - real clients against `catamaran mail serve`: postal
# delivering over SMTP, then rabid retrieving and deleting over POP3 (MD5 of
# every body checked), with the Maildir root on a Catamaran mount and on
# tmpfs, interleaved; prints messages per minute for each and the ratio
# mount/tmpfs (README.md here).
#
# usage: tools/bench/mail_clients.sh [DIR]   (DIR default: ./data/mailbench)
#
# env:   CATAMARAN  the binary (default: build/catamaran of this tree, then PATH)
#        SECONDS    seconds postal sends, and at most rabid fetches, per
#                   measurement [30] (taken from the environment the script
#                   was started with: inside bash SECONDS is the shell's clock)
#        THREADS    postal threads [4]
#        PROCS      rabid processes [4]
#        USERS      mailboxes [20]
#        MSG_KB     postal -m: largest message body in KiB (sizes are uniform
#                   in 0..MSG_KB) [10, postal's default]
#        PER_CONN   postal -c: up to this many messages per connection [10]
#        ROUNDS     interleaved mount/tmpfs rounds, median reported [1]
#        SIZE       size of each of the two backing files of the mirror [2G]
#        KEEP=1     keep the backing files afterwards
#
# Counting: postal and rabid (0.76) print per-minute lines only at wall-clock
# minute boundaries (rabid not at all here), so the script counts in the
# Maildirs: postal is stopped with SIGINT (it finishes the message in hand,
# then idles) and the files are counted: delivered/minute = files * 60 /
# seconds sent. rabid then runs until the Maildirs are empty (or SECONDS):
# retrieved/minute = files removed * 60 / seconds. Errors: the lines postal
# and rabid print on stderr (server errors, MD5 mismatches, time-outs).
#
# Needs root (mount), postal and rabid (Debian package postal).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

run_seconds=$(inherited_seconds 30)
dir=${1:-./data/mailbench}
THREADS=${THREADS:-4}
PROCS=${PROCS:-4}
USERS=${USERS:-20}
MSG_KB=${MSG_KB:-10}
PER_CONN=${PER_CONN:-10}
ROUNDS=${ROUNDS:-1}
SIZE=${SIZE:-2G}
KEEP=${KEEP:-0}

find_catamaran
need_tools --hint "apt-get install postal" postal rabid mountpoint
need_root mount

use_bench_dir "$dir"
mnt=$dir/mnt
tmpfs=$dir/tmpfs
mkdir -p "$mnt" "$tmpfs"
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	unmount_all "$mnt" "$tmpfs"
	remove_unless_keep "$d1" "$d2"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# users: the users file and the list postal and rabid read.
: >"$out/list"
rm -f "$out/users"
for i in $(seq "$USERS"); do
	echo "pw-b$i" | "$cat_bin" mail adduser --users "$out/users" "b$i" >/dev/null
	echo "b$i@localhost pw-b$i" >>"$out/list"
done

count() { find "$1" -mindepth 3 -maxdepth 3 -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l; }

echo "mail_clients.sh: postal -t $THREADS -c $PER_CONN -m $MSG_KB, rabid -p $PROCS," \
	"$USERS users, ${run_seconds}s each, $ROUNDS round(s)"
"$cat_bin" format --size "$SIZE" "$d1" "$d2" >/dev/null
"$cat_bin" mount "$d1" "$d2" "$mnt"
mount -t tmpfs -o size="$SIZE" tmpfs "$tmpfs"

# measure TARGET ROOT ROUND: one postal run and one rabid run; appends
# "TARGET delivered/min retrieved/min errors" to $out/results.
measure() {
	local target=$1 root=$2 round=$3 tag=$out/$1.$3
	rm -rf "$root/spool"
	mkdir "$root/spool"
	sync
	"$cat_bin" mail serve --root "$root/spool" --users "$out/users" \
		--smtp 127.0.0.1:0 --pop3 127.0.0.1:0 >"$tag.serve" 2>"$tag.serve.err" &
	local srv=$!
	pids+=("$srv")
	for _ in $(seq 100); do
		[ "$(grep -c 'port [0-9]' "$tag.serve" 2>/dev/null)" = 2 ] && break
		sleep 0.05
	done
	local smtp pop3
	smtp=$(sed -n 's/^SMTP on .*(port \([0-9]*\))$/\1/p' "$tag.serve")
	pop3=$(sed -n 's/^POP3 on .*(port \([0-9]*\))$/\1/p' "$tag.serve")
	[ -n "$smtp" ] && [ -n "$pop3" ] || die "$target: mail serve did not start: $(cat "$tag.serve.err")"

	local t0 t1 p
	t0=$(now)
	# in $out: postal and rabid write postal.log / rabid.log (MD5 sums) to
	# their working directory
	(cd "$out" && exec postal -t "$THREADS" -c "$PER_CONN" -m "$MSG_KB" \
		"[127.0.0.1]$smtp" "$out/list") >"$tag.postal" 2>"$tag.postal.err" &
	p=$!
	sleep "$run_seconds"
	kill -INT "$p"
	t1=$(now)
	sleep 2 # the messages in hand
	kill -TERM "$p"
	wait "$p" 2>/dev/null || true
	local sent
	sent=$(count "$root/spool")

	local r t2 t3 left
	t2=$(now)
	(cd "$out" && exec rabid -p "$PROCS" -u "[127.0.0.1]$pop3" "$out/list") \
		>"$tag.rabid" 2>"$tag.rabid.err" &
	r=$!
	local deadline=$((SECONDS + run_seconds))
	while [ "$SECONDS" -lt "$deadline" ]; do
		left=$(count "$root/spool")
		[ "$left" = 0 ] && break
		sleep 0.2
	done
	t3=$(now)
	kill -INT "$r"
	sleep 1
	kill -TERM "$r"
	wait "$r" 2>/dev/null || true
	left=$(count "$root/spool")
	kill -TERM "$srv"
	wait "$srv" || echo "mail_clients.sh: $target: mail serve exited $?" >&2

	local errs
	errs=$(cat "$tag.postal.err" "$tag.rabid.err" | grep -c . || true)
	awk -v t="$target" -v s="$sent" -v l="$left" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
		-v e="$errs" -v r="$round" 'BEGIN {
		dm = s * 60 / (b - a); rm = (s - l) * 60 / (d - c)
		printf "round %d %-5s delivered %6d in %5.1fs = %8.0f/min, retrieved %6d in %5.1fs = %8.0f/min, %d errors\n",
			r, t, s, b - a, dm, s - l, d - c, rm, e > "/dev/stderr"
		printf "%s %.0f %.0f %d\n", t, dm, rm, e }' >>"$out/results"
}

: >"$out/results"
for round in $(seq "$ROUNDS"); do
	measure mount "$mnt" "$round"
	measure tmpfs "$tmpfs" "$round"
done

umount "$mnt"
for _ in $(seq 100); do pgrep -f "catamaran mount $d1" >/dev/null || break; sleep 0.1; done

# median_mean: of the numbers on stdin, the mean of the two middle ones for
# an even count (lib.sh's median takes the lower one)
median_mean() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$out/results" | median_mean; }
md=$(col mount 2); mr=$(col mount 3); td=$(col tmpfs 2); tr=$(col tmpfs 3)
me=$(awk '{ s += $4 } END { print s + 0 }' "$out/results")
echo
printf '%-28s %12s %12s %8s\n' "messages per minute" "mount" "tmpfs" "ratio"
printf '%-28s %12.0f %12.0f %8.2f\n' "postal delivered (SMTP)" "$md" "$td" "$(echo "$md $td" | awk '{ print $2 ? $1 / $2 : 0 }')"
printf '%-28s %12.0f %12.0f %8.2f\n' "rabid retrieved (POP3)" "$mr" "$tr" "$(echo "$mr $tr" | awk '{ print $2 ? $1 / $2 : 0 }')"
echo "errors reported by postal and rabid: $me"
[ "$me" = 0 ]
