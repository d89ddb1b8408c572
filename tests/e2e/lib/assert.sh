# assert.sh - shared by the e2e scripts (sourced, not run: ctest only runs
# tests/e2e/*.sh). The script sets CAT (the catamaran binary), NAME and T (a
# scratch directory) first.
#   run ARGS...          run catamaran; $rc, $T/out and $T/err hold the outcome
#   expect RC ARGS...    run and fail unless the exit status is RC
#   ok TEXT / fail TEXT  count a passed check / stop with the last output
pass=0

ok() { pass=$((pass + 1)); echo "ok $pass: $*"; }
fail() {
	echo "FAIL: $*"
	for f in "$T/out" "$T/err"; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f"; done
	echo "$NAME: $pass passed, 1 failed"
	exit 1
}
run() { set +e; "$CAT" "$@" >"$T/out" 2>"$T/err"; rc=$?; set -e; }
expect() {
	local want=$1; shift
	run "$@"
	[ "$rc" = "$want" ] || fail "catamaran $* exited $rc, expected $want"
}
