#!/usr/bin/env bash
# mail_serve.sh - the mail servers through the CLI, on a Catamaran mount:
# `mail adduser`, `mail serve`, an SMTP delivery to two users (dot-stuffed
# line included), a relay attempt refused, POP3 STAT/UIDL/RETR/DELE+QUIT;
# then unmount and fsck clean.
#
# usage: mail_serve.sh PATH_TO_CATAMARAN   (root, /dev/fuse)
set -eu

CAT=${1:?usage: mail_serve.sh PATH_TO_CATAMARAN}
NAME=mail_serve
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 0; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/catamaran-mail.XXXXXX")
M=$T/mnt
mkdir "$M"
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	umount -l "$M" 2>/dev/null || true
	pkill -9 -f "catamaran mount $T/d1" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib/assert.sh"

# Ports from the process id, in a range nothing else here uses.
SMTP=$((20000 + $$ % 10000)); POP3=$((SMTP + 10000))

# session PORT LINES...: send each line (CRLF), print every reply line.
session() {
	local port=$1; shift
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	for line in "$@"; do printf '%s\r\n' "$line" >&3; done
	timeout 10 cat <&3 | tr -d '\r'
	exec 3>&-
}

expect 0 format --size 128M "$T/d1" "$T/d2"
expect 0 mount "$T/d1" "$T/d2" "$M"
mkdir "$M/spool"
echo 'secret-a' | "$CAT" mail adduser --root "$M/spool" --users "$T/users" alice >/dev/null
echo 'secret-b' | "$CAT" mail adduser --root "$M/spool" --users "$T/users" bob >/dev/null
[ "$(stat -c %a "$T/users")" = 600 ] || fail "users file mode $(stat -c %a "$T/users")"
"$CAT" mail serve --root "$M/spool" --users "$T/users" --smtp "127.0.0.1:$SMTP" \
	--pop3 "127.0.0.1:$POP3" >"$T/serve.log" 2>&1 &
srv=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP") 2>/dev/null && break; sleep 0.1; done
ok "adduser, serve listening"

session "$SMTP" "EHLO client.example" "MAIL FROM:<sender@example.org>" "RCPT TO:<alice@localhost>" \
	"RCPT TO:<bob@localhost>" "RCPT TO:<someone@elsewhere.example>" "DATA" \
	"Subject: hello" "" "first line" "..dot line" "." "QUIT" > "$T/smtp.out"
grep -q "^250.*PIPELINING" "$T/smtp.out" || fail "EHLO: $(cat "$T/smtp.out")"
grep -q "^550 5.7.1" "$T/smtp.out" || fail "relay not refused: $(cat "$T/smtp.out")"
grep -q "^250 2.0.0" "$T/smtp.out" || fail "DATA not accepted: $(cat "$T/smtp.out")"
for u in alice bob; do
	[ "$(ls "$M/spool/$u/new" | wc -l)" = 1 ] || fail "$u: $(ls "$M/spool/$u/new" | wc -l) messages in new/"
	grep -qx ".dot line" "$M/spool/$u/new/"* || fail "$u: dot-unstuffing"
done
ok "SMTP: delivered to alice and bob (dot-unstuffed), relay refused with 550 5.7.1"

session "$POP3" "USER alice" "PASS secret-a" "STAT" "UIDL" "RETR 1" "DELE 1" "QUIT" > "$T/pop.out"
grep -q "^+OK 1 " "$T/pop.out" || fail "STAT: $(cat "$T/pop.out")"
grep -q "^\.\.dot line$" "$T/pop.out" || fail "RETR dot-stuffing: $(cat "$T/pop.out")"
id=$(ls "$M/spool/bob/new")
left=$(ls "$M/spool/alice/new" "$M/spool/alice/cur" | grep -v ":$" | grep -c . || true)
[ "$left" = 0 ] || fail "DELE+QUIT left alice's message: $(ls -R "$M/spool/alice"; cat "$T/pop.out")"
session "$POP3" "USER bob" "PASS wrong" "QUIT" > "$T/pop2.out"
grep -q "^-ERR" "$T/pop2.out" || fail "wrong password accepted: $(cat "$T/pop2.out")"
ok "POP3: STAT, UIDL, RETR (dot-stuffed), DELE at QUIT; wrong password refused"

kill "$srv"; wait "$srv" || true; srv=
[ -n "$id" ] && [ -e "$M/spool/bob/new/$id" ] || fail "bob's message gone"
umount "$M"
for _ in $(seq 50); do pgrep -f "catamaran mount $T/d1" >/dev/null || break; sleep 0.1; done
expect 0 fsck "$T/d1" "$T/d2"
ok "server stopped, unmounted, fsck clean"
echo "$NAME: $pass passed, 0 failed"
