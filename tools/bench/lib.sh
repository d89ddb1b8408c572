# shellcheck shell=bash
# lib.sh - what the benchmark scripts here share; sourced, not run:
#   . "$here/lib.sh"    (after `set -euo pipefail`; it sets no options)
#
# Offers:
#   die MSG                  MSG on stderr, prefixed with the script's name; exit 2
#   find_catamaran           sets cat_bin: $CATAMARAN, else build/catamaran of
#                            this tree, else catamaran on PATH
#   need_tools [--hint H] TOOL...   dies unless every TOOL is on PATH
#   need_root WHY, need_fuse         die unless root / unless /dev/fuse exists
#   inherited_seconds DEFAULT        SECONDS as the script was started with it
#   use_bench_dir DIR        sets dir (DIR made, absolute), d1 and d2 (the
#                            mirror's backing files in it), out (made)
#   parse_size               sets size_bytes from $SIZE (K, M, G: powers of 2)
#   fill FILE...             writes FILE in full, size_bytes long
#   format_mirror_clean D1 D2        `catamaran format` of legs that hold the
#                            same bytes (no resync needed)
#   attach_loop FILE         sets loop: a loop device over FILE
#   mount_new_ext4 MNT       a fresh ext4 on $loop, mounted on MNT
#   unmount_all MNT..., detach_loop, remove_unless_keep FILE...   teardown,
#                            for the scripts' EXIT traps: never fail
#   say, now, ratio, median, med     output and arithmetic
#
# Globals it sets: script, cat_bin, dir, d1, d2, out, size_bytes, loop (empty
# until attach_loop).

script=${0##*/}
loop=

die() { echo "$script: $*" >&2; exit 2; }

find_catamaran() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	if [ -n "${CATAMARAN:-}" ]; then
		cat_bin=$CATAMARAN
	elif [ -x "$repo/build/catamaran" ]; then
		cat_bin=$repo/build/catamaran
	else
		cat_bin=$(command -v catamaran) || die "no catamaran binary (set CATAMARAN)"
	fi
}

need_tools() { # [--hint HINT] TOOL...: HINT is added to the message, in ()
	local hint='' tool
	if [ "${1:-}" = --hint ]; then
		hint=" ($2)"
		shift 2
	fi
	for tool; do
		command -v "$tool" >/dev/null || die "$tool is needed$hint"
	done
}

need_root() { # WHY: what root is needed for
	[ "$(id -u)" = 0 ] || die "needs root ($1)"
}

need_fuse() {
	[ -c /dev/fuse ] || die "needs /dev/fuse"
}

# Inside bash SECONDS is the shell's own clock, counting up from the value it
# inherited: the value the script was started with is read from its initial
# environment instead.
inherited_seconds() { # DEFAULT: printed when SECONDS was not set
	local s
	s=$(tr '\0' '\n' </proc/$$/environ | sed -n 's/^SECONDS=//p')
	echo "${s:-$1}"
}

# shellcheck disable=SC2034 # d1, d2: for the scripts that source this
use_bench_dir() { # DIR
	mkdir -p "$1"
	dir=$(cd "$1" && pwd)
	d1=$dir/disk1.img
	d2=$dir/disk2.img
	out=$dir/out
	mkdir -p "$out"
}

parse_size() {
	size_bytes=$(numfmt --from=iec "$SIZE") || die "SIZE: not a size: $SIZE"
}

# Write every byte of a backing file first, so that no side of a comparison
# pays for converting unwritten (fallocated) extents of the host filesystem
# on its first writes, which would measure the host and not the contestants.
fill() { # FILE...
	local f
	for f; do
		rm -f "$f"
		dd if=/dev/zero of="$f" bs=1M count=$((size_bytes / 1048576)) oflag=direct \
			conv=fsync status=none
	done
}

# `--assume-clean`: both legs hold the same bytes (zeros from fill, then the
# mirror's own writes to both), so no resync is needed.
format_mirror_clean() { # D1 D2
	"$cat_bin" format --force --assume-clean "$1" "$2"
}

attach_loop() { # FILE
	loop=$(losetup --find --show "$1")
}

mount_new_ext4() { # MNT
	# Inode tables and journal zeroed now, not by ext4lazyinit during the run.
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
	mount "$loop" "$1"
}

unmount_all() { # MNT...: those that are mounted
	local m
	for m; do
		if mountpoint -q "$m"; then
			umount "$m" || echo "$script: cannot unmount $m" >&2
		fi
	done
}

detach_loop() {
	if [ -n "$loop" ]; then
		losetup -d "$loop" || echo "$script: cannot detach $loop" >&2
	fi
}

remove_unless_keep() { # FILE...: unless KEEP=1
	if [ "${KEEP:-0}" != 1 ]; then
		rm -f "$@"
	fi
}

say() { printf '%s\n' "$*"; }
now() { date +%s.%N; }
# ratio A B [DECIMALS]: A / B, 2 decimals unless told ("n/a" when B is 0 or empty)
ratio() {
	awk -v a="$1" -v b="${2:-0}" -v d="${3:-2}" \
		'BEGIN { if (b == 0) print "n/a"; else printf "%." d "f", a / b }'
}
# median: of the numbers on stdin, one a line (the lower middle one of an even count)
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# med "V1 V2 ...": the median of a space-separated list
med() {
	local -a v
	read -ra v <<<"$1"
	printf '%s\n' "${v[@]}" | median
}
