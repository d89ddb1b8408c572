#!/usr/bin/env bash
# mail_clients.sh - `catamaran mail serve` against real mail clients from
# Debian, on a tmpfs root and on a Catamaran mount:
#   postal  delivers random messages over SMTP (several threads, several
#           messages per connection, "MAIL FROM: <a>" with a space);
#   rabid   retrieves and deletes them over POP3, checking the MD5 of every
#           body against the X-PostalHash header postal put in;
#   swaks   sends with PIPELINING to two users (a dot line, a 998-octet line
#           starting with a dot: legal, RFC 5321 4.5.3.1.6);
#   mpop    retrieves into a local Maildir (UIDL/TOP with keep+only_new and a
#           filter first, then retrieve-and-delete).
# When `mail serve` has --lmtp (RFC 2033), on tmpfs too: postal -L delivers
# over LMTP, rabid fetches it all back, swaks --protocol LMTP gets one reply
# per recipient.
# After each phase the counts must agree: what postal had queued (250 after
# DATA) = messages in the Maildirs, then = messages rabid deleted.
#
# postal and rabid (0.76) print their per-minute lines only at wall-clock
# minute boundaries (rabid never, in practice), so the counts come from
# their -z debug logs (every line sent and received); the per-minute lines
# are checked for a zero error column when there are any. Both ignore
# SIGINT for exiting but stop starting work on it: SIGINT, wait for their
# sessions to end, then SIGTERM - the counts are exact.
#
# usage: mail_clients.sh PATH_TO_CATAMARAN   (root, /dev/fuse, postal swaks mpop)
# env:   POSTAL_SECONDS (default 5) - how long postal sends on each root;
#        KEEP_T=1 keeps the scratch directory (logs of every client session).
set -eu

CAT=${1:?usage: mail_clients.sh PATH_TO_CATAMARAN}
NAME=mail_clients
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
for tool in postal rabid swaks mpop; do
	command -v "$tool" >/dev/null || { echo "SKIP: no $tool (apt-get install postal swaks mpop)"; exit 0; }
done
SECS=${POSTAL_SECONDS:-5}
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-mclients.XXXXXX")
mkdir "$T/mnt" "$T/tmpfs"
pids=()
mountpid=
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	umount -l "$T/mnt" 2>/dev/null || true
	[ -n "$mountpid" ] && kill -9 "$mountpid" 2>/dev/null || true
	umount -l "$T/tmpfs" 2>/dev/null || true
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"
t0=$SECONDS

USERS="u1 u2 u3 u4"
for u in $USERS; do
	echo "pw-$u" | "$CAT" mail adduser --users "$T/users" "$u" >/dev/null
	echo "$u@localhost pw-$u" >>"$T/list"   # postal: address; rabid: address password
done

# count ROOT: messages in every user's new/ and cur/.
count() {
	local n=0 u
	for u in $USERS; do
		[ -d "$1/$u" ] || continue
		n=$((n + $(find "$1/$u/new" "$1/$u/cur" -type f | wc -l)))
	done
	echo "$n"
}

# serve LABEL ROOT [LMTP]: start `mail serve` on free ports (and an LMTP
# listener when LMTP is given); sets SMTP, POP3, LMTP, SRV.
serve() {
	local nlis=2 extra=()
	[ -n "${3:-}" ] && { nlis=3; extra=(--lmtp 127.0.0.1:0); }
	"$CAT" mail serve --root "$2" --users "$T/users" --smtp 127.0.0.1:0 --pop3 127.0.0.1:0 \
		"${extra[@]}" --hostname "mx.$1.test" >"$T/$1.serve.out" 2>"$T/$1.serve.err" &
	SRV=$!
	pids+=("$SRV")
	for _ in $(seq 100); do
		[ "$(grep -c 'port [0-9]' "$T/$1.serve.out" 2>/dev/null)" = "$nlis" ] && break
		sleep 0.05
	done
	SMTP=$(sed -n 's/^SMTP on .*(port \([0-9]*\))$/\1/p' "$T/$1.serve.out")
	POP3=$(sed -n 's/^POP3 on .*(port \([0-9]*\))$/\1/p' "$T/$1.serve.out")
	LMTP=$(sed -n 's/^LMTP on .*(port \([0-9]*\))$/\1/p' "$T/$1.serve.out")
	[ -n "$SMTP" ] && [ -n "$POP3" ] || fail "$1: mail serve did not start: $(cat "$T/$1.serve.out" "$T/$1.serve.err")"
	[ "$nlis" = 2 ] || [ -n "$LMTP" ] || fail "$1: no LMTP listener: $(cat "$T/$1.serve.out")"
}

# stop_client PID LOGBASE LAST: SIGINT, wait until every session log of
# LOGBASE:* ends in a line matching LAST (the session's goodbye), SIGTERM.
stop_client() {
	local pid=$1 base=$2 last=$3 f done
	kill -INT "$pid"
	for _ in $(seq 100); do
		done=1
		for f in "$base":*; do
			[ -e "$f" ] || continue
			tail -n 1 "$f" | tr -d '\r' | grep -qE "$last" || done=0
		done
		[ "$done" = 1 ] && break
		sleep 0.1
	done
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# body FILE: a message's body without its trailing empty lines.
body() {
	sed '1,/^$/d' "$1" | awk '{ l[n++] = $0 } END { while (n > 0 && l[n - 1] == "") n--
		for (i = 0; i < n; i++) print l[i] }'
}

# errors_in BASE: the SMTP/POP3 error replies found in the debug logs BASE:*.
errors_in() { cat "$1":* 2>/dev/null | tr -d '\r' | grep -aE '^([45][0-9][0-9] [0-9]\.[0-9]+\.[0-9]+ |-ERR)' || true; }

# postal_run LABEL ROOT PORT [-L]: postal for SECS seconds, 3 threads, up
# to 10 messages a connection; checks and counts; sets SENT.
postal_run() {
	local L=$1 R=$2 port=$3 lmtp=${4:-}
	local pl=$T/$L.postal$lmtp
	# in $T: postal and rabid write postal.log / rabid.log to their
	# working directory
	(cd "$T" && exec postal $lmtp -m 32 -t 3 -c 10 -r 3000 -z "$pl" "[127.0.0.1]$port" \
		"$T/list") >"$pl.out" 2>"$pl.err" &
	local p=$!
	pids+=("$p")
	sleep "$SECS"
	stop_client "$p" "$pl" '^221 '
	local sent inbox perr
	if [ -n "$lmtp" ]; then # one recipient a message: one "250 2.0.0 <user> ..."
		sent=$(cat "$pl":* | tr -d '\r' | grep -ac '^250 2\.0\.0 <[^>]*> Ok: delivered as ' || true)
	else
		sent=$(cat "$pl":* | tr -d '\r' | grep -ac '^250 2\.0\.0 Ok: queued as ' || true)
	fi
	inbox=$(count "$R")
	perr=$(errors_in "$pl")
	[ -z "$perr" ] && [ ! -s "$pl.err" ] || fail "$L: postal errors: $(head -5 "$pl.err"; echo "$perr" | head -5)"
	# per-minute lines (time,messages,data(K),errors,connections,...), if any
	awk -F, '/^[0-9]+:[0-9]+,/ && $4 != 0 { bad = 1 } END { exit bad }' "$pl.out" ||
		fail "$L: postal reports errors: $(cat "$pl.out")"
	[ "$sent" -gt 0 ] || fail "$L: postal queued nothing: $(head -c 2000 "$pl":1)"
	[ "$inbox" = "$sent" ] || fail "$L: postal${lmtp:+ $lmtp} had $sent queued, the Maildirs hold $inbox"
	ok "$L: postal${lmtp:+ $lmtp} delivered $sent messages in ${SECS}s, 0 errors, all $inbox in the Maildirs"
	SENT=$sent
}

# rabid_run LABEL ROOT: retrieve and delete everything, MD5 of every body
# checked; the counts must be SENT.
rabid_run() {
	local L=$1 R=$2 sent=$SENT p
	local rl=$T/$L.rabid
	(cd "$T" && exec rabid -p 1 -u -z "$rl" "[127.0.0.1]$POP3" "$T/list") >"$rl.out" 2>"$rl.err" &
	p=$!
	pids+=("$p")
	for _ in $(seq 300); do
		[ "$(count "$R")" = 0 ] && break
		sleep 0.1
	done
	stop_client "$p" "$rl" '^(\+OK Catamaran POP3 server signing off|-ERR)'
	local deleted retrieved rerr
	deleted=$(cat "$rl":* | tr -d '\r' | sed -n 's/^+OK .*signing off (\([0-9]*\) messages deleted)$/\1/p' |
		awk '{ s += $1 } END { print s + 0 }')
	retrieved=$(cat "$rl":* | tr -d '\r' | grep -aic '^retr [0-9]' || true)
	rerr=$(errors_in "$rl")
	[ -z "$rerr" ] && [ ! -s "$rl.err" ] || fail "$L: rabid errors: $(head -5 "$rl.err"; echo "$rerr" | head -5)"
	[ "$(count "$R")" = 0 ] || fail "$L: $(count "$R") messages left after rabid"
	[ "$retrieved" = "$sent" ] && [ "$deleted" = "$sent" ] ||
		fail "$L: postal sent $sent, rabid retrieved $retrieved and deleted $deleted"
	ok "$L: rabid retrieved and deleted all $deleted (MD5 checked), Maildirs empty"
}

# phase LABEL ROOT: the four clients against the server on ROOT.
phase() {
	local L=$1 R=$2
	serve "$L" "$R"
	postal_run "$L" "$R" "$SMTP"
	rabid_run "$L" "$R"

	# --- swaks with PIPELINING, two recipients, dot lines.
	{
		printf 'Subject: swaks on %s\n\nfirst line\n.a line starting with a dot\n' "$L"
		printf '.%0997d\n' 0          # 998 octets + CRLF, then dot-stuffed: 1001 on the wire
		printf 'last line\n'
	} >"$T/swaks.eml"
	swaks --server "127.0.0.1:$SMTP" --pipeline --from sender@example.org \
		--to u1@localhost,u2@localhost --data @"$T/swaks.eml" >"$T/$L.swaks" 2>&1 ||
		fail "$L: swaks failed: $(tail -20 "$T/$L.swaks")"
	grep -A1 '^ -> MAIL FROM:<sender@example.org>' "$T/$L.swaks" | grep -q '^ -> RCPT TO:' ||
		fail "$L: swaks did not pipeline: $(head -30 "$T/$L.swaks")"
	local id f
	id=$(sed -n 's/^<-  250 2\.0\.0 Ok: queued as \(.*\)$/\1/p' "$T/$L.swaks" | tr -d '\r')
	[ -n "$id" ] || fail "$L: no 250 after DATA: $(grep -a '^<' "$T/$L.swaks" | tail -5)"
	[ -f "$R/u1/new/$id" ] || fail "$L: swaks message $id not in u1/new: $(ls "$R/u1/new")"
	for u in u1 u2; do   # one copy each (the 250 names u1's)
		[ "$(ls "$R/$u/new" | wc -l)" = 1 ] || fail "$L: $u/new: $(ls "$R/$u/new")"
		f=$(ls "$R/$u/new"/*)
		grep -qx '.a line starting with a dot' "$f" || fail "$L: $u: dot-unstuffing"
		grep -qx ".$(printf '%0997d' 0)" "$f" || fail "$L: $u: the 998-octet dot line"
	done
	ok "$L: swaks --pipeline: 250 after DATA, message $id in u1 and u2 (dot lines intact)"

	# --- mpop: first keep+only_new with a filter (UIDL, TOP), then delete.
	local md=$T/$L.maildir
	mkdir -p "$md/new" "$md/cur" "$md/tmp"
	printf '#!/bin/sh\ncat >>"%s"\nexit 0\n' "$T/$L.headers" >"$T/filter.sh"
	chmod +x "$T/filter.sh"
	cat >"$T/$L.mpoprc" <<-EOF
	defaults
	tls off
	auth user
	host 127.0.0.1
	port $POP3
	delivery maildir $md
	uidls_file $T/$L.uidls
	account keep
	user u1
	password pw-u1
	keep on
	only_new on
	filter $T/filter.sh
	account u1
	user u1
	password pw-u1
	only_new off
	account u2
	user u2
	password pw-u2
	only_new off
	EOF
	chmod 600 "$T/$L.mpoprc"
	mpop -q -C "$T/$L.mpoprc" keep >"$T/$L.mpop" 2>&1 || fail "$L: mpop keep: $(cat "$T/$L.mpop")"
	[ "$(ls "$md/new" | wc -l)" = 1 ] || fail "$L: mpop keep: $(ls "$md/new" | wc -l) messages"
	grep -q "^Subject: swaks on $L" "$T/$L.headers" || fail "$L: mpop filter (TOP) got no headers"
	mpop -q -C "$T/$L.mpoprc" keep >"$T/$L.mpop" 2>&1 || fail "$L: mpop keep 2: $(cat "$T/$L.mpop")"
	[ "$(ls "$md/new" | wc -l)" = 1 ] || fail "$L: mpop only_new fetched again (UIDL)"
	[ "$(count "$R")" = 2 ] || fail "$L: keep on deleted: $(count "$R") left"
	mpop -q -C "$T/$L.mpoprc" u1 u2 >"$T/$L.mpop" 2>&1 || fail "$L: mpop: $(cat "$T/$L.mpop")"
	[ "$(ls "$md/new" | wc -l)" = 3 ] || fail "$L: mpop fetched $(ls "$md/new" | wc -l) of 3"
	[ "$(count "$R")" = 0 ] || fail "$L: $(count "$R") messages left after mpop"
	for f in "$md"/new/*; do   # swaks adds an empty line before the final dot
		cmp -s <(body "$f") <(body "$T/swaks.eml") ||
			fail "$L: mpop: body of $f differs from what swaks sent"
	done
	ok "$L: mpop: UIDL+TOP with keep, then retrieve+delete into a Maildir, bodies exact, server empty"

	kill -TERM "$SRV"
	wait "$SRV" || fail "$L: mail serve exited $?: $(cat "$T/$L.serve.err")"
}

# lmtp_phase LABEL ROOT: postal -L, rabid, swaks --protocol LMTP.
lmtp_phase() {
	local L=$1 R=$2
	serve "$L" "$R" lmtp
	postal_run "$L" "$R" "$LMTP" -L
	rabid_run "$L" "$R"
	swaks --server "127.0.0.1:$LMTP" --protocol LMTP --pipeline --from sender@example.org \
		--to u1@localhost,nobody@localhost,u2@localhost,u1@localhost \
		--body "over LMTP" >"$T/$L.swaks" 2>&1 || true # swaks exits 24 for the refused one
	local replies
	replies=$(sed -n '/^ -> \.$/,/^ -> QUIT/p' "$T/$L.swaks" | grep -c '^<-  250 2\.0\.0 <' || true)
	[ "$replies" = 3 ] || fail "$L: swaks LMTP: $replies replies after DATA, want 3: $(tail -12 "$T/$L.swaks")"
	[ "$(count "$R")" = 2 ] || fail "$L: LMTP delivered $(count "$R"), want u1 and u2 once each"
	ok "$L: swaks --protocol LMTP: one 250 per accepted recipient (3, a duplicate included), 2 copies"
	kill -TERM "$SRV"
	wait "$SRV" || fail "$L: mail serve exited $?: $(cat "$T/$L.serve.err")"
}

mount -t tmpfs -o size=256m tmpfs "$T/tmpfs"
mkdir "$T/tmpfs/spool"
phase tmpfs "$T/tmpfs/spool"
if "$CAT" mail serve --help 2>&1 | grep -q -- '--lmtp'; then
	mkdir "$T/tmpfs/lmtp"
	lmtp_phase tmpfs-lmtp "$T/tmpfs/lmtp"
else
	echo "(no LMTP phase: mail serve has no --lmtp)"
fi

expect 0 format --size 512M "$T/d1" "$T/d2"
expect 0 mount "$T/d1" "$T/d2" "$T/mnt"
mountpid=$(pgrep -f "catamaran mount $T/d1" | head -1 || true)
mkdir "$T/mnt/spool"
phase mount "$T/mnt/spool"
umount "$T/mnt"
for _ in $(seq 50); do kill -0 "$mountpid" 2>/dev/null || break; sleep 0.1; done
expect 0 fsck "$T/d1" "$T/d2"
ok "unmounted, fsck clean ($((SECONDS - t0)) s in all)"
echo "$NAME: $pass passed, 0 failed"
