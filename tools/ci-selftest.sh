#!/bin/sh
# ci-selftest.sh -- proves CI cannot pass without the fixtures: a fresh clone with no ../shared beside it must fail.
#   usage: tools/ci-selftest.sh [--full]       (from anywhere inside the git checkout)
#
# Clones the checkout's HEAD (committed work only) into a temporary folder
# that has no ../shared, then:
#   - runs .ci/run there: it must fail, naming ../shared/fixtures;
#   - with --full, checks that configure refuses --enable-asan with
#     --enable-tsan, then builds the clone and runs CI=true make check: it must
#     fail, every test that needs the fixtures must be a FAIL (none a SKIP),
#     and the tests that need none must still pass.  (A few minutes.)
# Exit 0 when all of that holds.  Not part of make check: it clones and,
# with --full, builds a second tree.
full=0
[ "${1:-}" = --full ] && full=1
src=$(git rev-parse --show-toplevel) || { echo "ci-selftest: not inside a git checkout" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

git clone -q "$src" "$tmp/natter" || { echo "ci-selftest: git clone failed" >&2; exit 2; }
[ ! -e "$tmp/shared" ] || { echo "ci-selftest: $tmp/shared exists" >&2; exit 2; }
cd "$tmp/natter" || exit 2

# .ci/run in the clone, with nothing pointing at fixtures elsewhere.
env -u NATTER_FIXTURES sh .ci/run > "$tmp/ci.out" 2>&1
s=$?
[ $s -ne 0 ] && ok ".ci/run fails in a clone without ../shared (status $s)" ||
    bad ".ci/run passed without fixtures"
grep -q "shared fixtures are not at ../shared/fixtures" "$tmp/ci.out" && ok ".ci/run names ../shared/fixtures" ||
    bad ".ci/run does not name the fixtures: $(head -c 800 "$tmp/ci.out")"
sed 's/^/  | /' "$tmp/ci.out"

if [ $full -eq 1 ]; then
	echo "== configure refuses --enable-asan with --enable-tsan"
	autoreconf -fi > "$tmp/build.out" 2>&1
	if ./configure --enable-asan --enable-tsan > "$tmp/conf.out" 2>&1; then
		bad "configure accepted --enable-asan --enable-tsan"
	else
		grep -q "enable-tsan and --enable-asan exclude each other" "$tmp/conf.out" &&
		    ok "configure refuses both sanitizers, saying why" || bad "configure message: $(tail -n 2 "$tmp/conf.out")"
	fi
	echo "== building the clone and running CI=true make check without fixtures"
	if (./configure && make -j2) >> "$tmp/build.out" 2>&1; then
		env -u NATTER_FIXTURES CI=true make -j2 check > "$tmp/check.out" 2>&1
		s=$?
		[ $s -ne 0 ] && ok "make check fails under CI without fixtures" || bad "make check passed without fixtures"
		grep -q "^SKIP:" "$tmp/check.out" && bad "a test was skipped: $(grep '^SKIP:' "$tmp/check.out")" ||
		    ok "no test skipped"
		for t in test-fuzz-replay.sh test-tok test-golden test-tmpl test-chat test-cli.sh test-ui.sh \
		    test-hostile.sh; do
			grep -q "^FAIL: tests/$t\$" "$tmp/check.out" && ok "$t fails" || bad "$t did not fail"
		done
		for t in test-ci.sh test-gguf test-quant test-sampler test-store; do
			grep -q "^PASS: tests/$t\$" "$tmp/check.out" && ok "$t (no fixtures needed) passes" ||
			    bad "$t did not pass"
		done
		grep -E "^(PASS|FAIL|SKIP|ERROR|#)" "$tmp/check.out" | sed 's/^/  | /'
	else
		tail -n 30 "$tmp/build.out"
		bad "the clone did not build"
	fi
fi
echo "ci-selftest: $pass passed, $fail failed"
[ $fail -eq 0 ]
