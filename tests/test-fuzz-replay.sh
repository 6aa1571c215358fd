#!/bin/sh
# test-fuzz-replay.sh -- the inputs that once broke a fuzz target, replayed on every build.
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
B=$(dirname "$0")
R="$NATTER_SRCDIR/fuzz/regress"
s=0
"$B/fuzz-replay-gguf" "$R/gguf" || s=1
"$B/fuzz-replay-tmpl" "$R/tmpl" || s=1
"$B/fuzz-replay-export" "$R/export" || s=1
if [ -f "$NATTER_FIXTURES/vocab/vocab-qwen2.gguf" ]; then
	NATTER_FUZZ_VOCAB="$NATTER_FIXTURES/vocab/vocab-qwen2.gguf" "$B/fuzz-replay-tok" "$R/tok" || s=1
else
	echo "tok: skipped (fixtures not found)"
fi
[ $s -eq 0 ] && echo "test-fuzz-replay.sh: 1 passed, 0 failed" || echo "test-fuzz-replay.sh: 0 passed, 1 failed"
exit $s
