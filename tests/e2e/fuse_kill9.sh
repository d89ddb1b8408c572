#!/usr/bin/env bash
# fuse_kill9.sh - kill -9 of the daemon in the middle of a workload, several
# rounds. Writers record every acknowledged operation (a file written and
# closed, a rename, an unlink) in a ledger outside the volume; after each
# kill the volume is mounted again and every acknowledged operation must be
# there. At the end: fsck clean, mirrors identical.
#
# usage: fuse_kill9.sh PATH_TO_CATAMARAN   (root, /dev/fuse)
# CATAMARAN_FUSE_KILL_ROUNDS (default 5) sets the rounds.
set -eu

CAT=${1:?usage: fuse_kill9.sh PATH_TO_CATAMARAN}
NAME=fuse_kill9
ROUNDS=${CATAMARAN_FUSE_KILL_ROUNDS:-5}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-kill.XXXXXX")
M=$T/mnt
D1=$T/d1
D2=$T/d2
mkdir "$M"
cleanup() {
	pkill -9 -f "catamaran mount $D1" 2>/dev/null || true
	while mountpoint -q "$M" 2>/dev/null || ! stat "$M" >/dev/null 2>&1; do
		umount -l "$M" 2>/dev/null || break
	done
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

# Writer w: in its own Maildir, deliver (tmp, link to new, unlink tmp),
# move every third new/ message to cur/, delete every fifth; each step that
# returned is appended to the ledger: "D n" delivered, "M n" moved, "X n"
# deleted (the ledger is a plain file outside the volume).
writer() {
	local w=$1 r=$2 i=0 md="$M/u$1"
	mkdir -p "$md/tmp" "$md/new" "$md/cur" 2>/dev/null || return 0
	while :; do
		i=$((i + 1)); local n="$r.$i"
		printf 'round %s msg %s\n' "$r" "$i" > "$md/tmp/$n" || return 0
		ln "$md/tmp/$n" "$md/new/$n" || return 0
		echo "D $n" >> "$T/ledger.$w"
		rm "$md/tmp/$n" || return 0
		if [ $((i % 3)) = 0 ]; then
			mv "$md/new/$n" "$md/cur/$n:2,S" || return 0
			echo "M $n" >> "$T/ledger.$w"
			if [ $((i % 5)) = 0 ]; then
				rm "$md/cur/$n:2,S" || return 0
				echo "X $n" >> "$T/ledger.$w"
			fi
		fi
	done
}

# The state each ledger implies must be on the volume.
verify() {
	local w
	for w in 1 2 3; do
		[ -f "$T/ledger.$w" ] || continue
		declare -A st=()
		local last_op= last_n=
		while read -r op n; do st[$n]=$op; last_op=$op; last_n=$n; done < "$T/ledger.$w"
		for n in "${!st[@]}"; do
			local md="$M/u$w" want="round ${n%%.*} msg ${n#*.}"
			# The writer's next step after its last ledger line was in
			# flight at the kill: it may or may not have happened. After a
			# move, that step is the delete of every fifth message.
			if [ "$n" = "$last_n" ] && [ "$last_op" = M ] && [ $(( ${n#*.} % 5 )) = 0 ]; then
				# settle it in the ledger, so later rounds check it strictly
				[ -e "$md/cur/$n:2,S" ] || echo "X $n" >> "$T/ledger.$w"
				continue
			fi
			case ${st[$n]} in
			D) [ -f "$md/new/$n" ] || [ -f "$md/cur/$n:2,S" ] || fail "u$w: delivered $n lost"
			   [ "$(cat "$md/new/$n" 2>/dev/null || cat "$md/cur/$n:2,S")" = "$want" ] || fail "u$w: $n content" ;;
			M) [ "$(cat "$md/cur/$n:2,S" 2>/dev/null)" = "$want" ] || fail "u$w: moved $n not in cur/" ;;
			X) [ ! -e "$md/cur/$n:2,S" ] && [ ! -e "$md/new/$n" ] || fail "u$w: deleted $n is back" ;;
			esac
		done
		unset st
	done
}

expect 0 format --size 128M "$D1" "$D2"
total=0
for r in $(seq 1 "$ROUNDS"); do
	expect 0 mount "$D1" "$D2" "$M"
	verify
	for w in 1 2 3; do writer "$w" "$r" 2>/dev/null & done
	sleep "0.$((RANDOM % 9 + 1))"
	pkill -9 -f "catamaran mount $D1"
	wait || true
	sleep 0.3
	total=$(cat "$T"/ledger.* 2>/dev/null | wc -l)
done
expect 0 mount "$D1" "$D2" "$M"
verify
ok "$ROUNDS rounds of kill -9 under 3 Maildir writers: all $total acknowledged operations present"
umount "$M"
for _ in $(seq 50); do pgrep -f "catamaran mount $D1" >/dev/null || break; sleep 0.1; done
expect 0 fsck "$D1" "$D2"
expect 0 check "$D1" "$D2"
ok "after the last unmount: fsck clean, mirrors identical"
echo "$NAME: $pass passed, 0 failed"
