#!/bin/sh
# test-fuzz-replay.sh -- the inputs that once broke a fuzz target, replayed on every build.
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
# The replayers are built programs: next to natter's build (out-of-tree
# builds keep the script in the source tree and the programs in the build).
if [ -n "${NATTER_BIN:-}" ]; then B="$(dirname "$NATTER_BIN")/tests"; else B=$(dirname "$0"); fi
R="$NATTER_SRCDIR/fuzz/regress"
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

"$B/fuzz-replay-gguf" "$R/gguf" && ok || bad "gguf regressions"
"$B/fuzz-replay-tmpl" "$R/tmpl" && ok || bad "tmpl regressions"
"$B/fuzz-replay-export" "$R/export" && ok || bad "export regressions"
"$B/fuzz-replay-remote" "$R/remote" && ok || bad "remote stream regressions"
if [ -f "$NATTER_FIXTURES/vocab/vocab-qwen2.gguf" ]; then
	NATTER_FUZZ_VOCAB="$NATTER_FIXTURES/vocab/vocab-qwen2.gguf" "$B/fuzz-replay-tok" "$R/tok" && ok ||
	    bad "tok regressions"
elif [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
	bad "tok: $NATTER_FIXTURES/vocab/vocab-qwen2.gguf not found (CI needs the shared fixtures)"
else
	echo "SKIP: tok regressions: $NATTER_FIXTURES/vocab/vocab-qwen2.gguf not found"
fi

# The replayer itself: a missing or empty folder must fail, not pass.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$B/fuzz-replay-tmpl" "$tmp" > /dev/null 2> "$tmp.err" && bad "an empty regression folder passed" || ok
grep -q "holds no inputs" "$tmp.err" && ok || bad "empty folder message: $(cat "$tmp.err")"
"$B/fuzz-replay-tmpl" "$tmp/missing" > /dev/null 2> "$tmp.err" && bad "a missing regression folder passed" || ok
grep -q "$tmp/missing" "$tmp.err" && ok || bad "missing folder message: $(cat "$tmp.err")"
rm -f "$tmp.err"

echo "test-fuzz-replay.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
