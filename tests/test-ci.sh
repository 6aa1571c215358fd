#!/bin/sh
# test-ci.sh -- the test harness cannot lie: under CI a skip fails, a missing fixtures folder fails, an empty replay fails.
: "${NATTER_SRCDIR:=.}"
B=$(dirname "$0")
S=$NATTER_SRCDIR
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
none="$tmp/no-fixtures-here"
gate="$S/tests/ci-gate.sh"

# expect WHAT WANTED_STATUS CMD...: runs CMD (output in $tmp/out), checks its status.
expect() {
	what=$1 want=$2
	shift 2
	"$@" > "$tmp/out" 2>&1
	s=$?
	[ $s -eq "$want" ] && ok || bad "$what: status $s, expected $want: $(head -c 600 "$tmp/out")"
}

# 1. The gate (make check's log compiler) on stand-in tests.
mk() { printf '#!/bin/sh\n%s\n' "$2" > "$tmp/$1"; chmod +x "$tmp/$1"; }
mk skip-fixtures 'echo "SKIP: fixtures not found"; exit 77'
mk skip-tier 'echo "SKIP: CPU tier avx512vnni not available"; exit 77'
mk skip-part 'echo "3 checks passed"; echo "SKIP: valgrind not installed"; exit 0'
mk skip-silent 'exit 77'
mk tier-part 'echo "SKIP: CPU tier avx512bf16 not available"; exit 0'
mk passes 'echo "all good"; exit 0'
mk fails 'echo "FAIL: broken" >&2; exit 1'
for ci in "" true 1; do
	# Outside CI the status passes through unchanged.
	if [ -z "$ci" ]; then
		expect "no CI: a fixtures skip" 77 env -u CI sh "$gate" "$tmp/skip-fixtures"
		expect "no CI: a partial skip" 0 env -u CI sh "$gate" "$tmp/skip-part"
		expect "no CI: a silent skip" 77 env -u CI sh "$gate" "$tmp/skip-silent"
	else
		expect "CI=$ci: a fixtures skip fails" 1 env CI=$ci sh "$gate" "$tmp/skip-fixtures"
		grep -q "^FAIL (CI).*only a missing CPU tier may skip" "$tmp/out" && ok || bad "CI=$ci: gate message"
		grep -q "SKIP: fixtures not found" "$tmp/out" && ok || bad "CI=$ci: the test's own output kept"
		expect "CI=$ci: a partial skip fails" 1 env CI=$ci sh "$gate" "$tmp/skip-part"
		expect "CI=$ci: a skip that names no tier fails" 1 env CI=$ci sh "$gate" "$tmp/skip-silent"
	fi
	expect "CI=$ci: a missing CPU tier skips" 77 env CI=$ci sh "$gate" "$tmp/skip-tier"
	expect "CI=$ci: a missing CPU tier inside a passing test" 0 env CI=$ci sh "$gate" "$tmp/tier-part"
	expect "CI=$ci: a pass" 0 env CI=$ci sh "$gate" "$tmp/passes"
	expect "CI=$ci: a failure" 1 env CI=$ci sh "$gate" "$tmp/fails"
done
expect "CI=false is not CI" 77 env CI=false sh "$gate" "$tmp/skip-fixtures"

# 2. The test programs without their fixtures: a skip outside CI, a failure
# naming the missing folder under CI (tests/test.h).
for t in test-tok test-tmpl test-golden test-chat; do
	env -u CI NATTER_FIXTURES="$none" "$B/$t" > "$tmp/out" 2>&1
	s=$?
	{ [ $s -eq 0 ] || [ $s -eq 77 ]; } && grep -q "^SKIP: fixtures folder not found" "$tmp/out" && ok ||
	    bad "$t without fixtures outside CI: status $s: $(head -c 400 "$tmp/out")"
	expect "$t without fixtures under CI" 1 env CI=true NATTER_FIXTURES="$none" "$B/$t"
	grep -q "FAIL (CI): the shared fixtures are not at $none" "$tmp/out" && ok ||
	    bad "$t under CI does not name the fixtures: $(head -c 400 "$tmp/out")"
	grep -q "^SKIP" "$tmp/out" && bad "$t under CI still prints a SKIP line" || ok
done
# The shell tests too (test-cli.sh and test-ui.sh through the gate).
for t in test-hostile.sh test-fuzz-replay.sh test-cli.sh test-ui.sh; do
	expect "$t without fixtures under CI" 1 env CI=true NATTER_FIXTURES="$none" sh "$gate" "$S/tests/$t"
done

# 3. The fuzz replayer: a missing or empty regression folder fails.
mkdir "$tmp/empty"
expect "fuzz-replay on an empty folder" 1 "$B/fuzz-replay-gguf" "$tmp/empty"
grep -q "holds no inputs" "$tmp/out" && ok || bad "empty folder message: $(cat "$tmp/out")"
expect "fuzz-replay on a missing folder" 1 "$B/fuzz-replay-gguf" "$tmp/missing"
expect "fuzz-replay without arguments" 2 "$B/fuzz-replay-gguf"
expect "fuzz-replay on the saved inputs" 0 "$B/fuzz-replay-gguf" "$S/fuzz/regress/gguf"

# 4. .ci/run without fixtures stops at once with their path.  A copy runs in
# a scratch tree, so that if the check were broken it could not rebuild this one.
mkdir -p "$tmp/clone/.ci"
cp "$S/.ci/run" "$tmp/clone/.ci/run"
expect ".ci/run without fixtures" 1 env NATTER_FIXTURES="$none" sh "$tmp/clone/.ci/run"
grep -q "shared fixtures are not at $none" "$tmp/out" && ok || bad ".ci/run message: $(head -c 600 "$tmp/out")"
grep -q "== 1" "$tmp/out" && bad ".ci/run went on to build without fixtures" || ok
expect ".ci/run without ../shared" 1 env -u NATTER_FIXTURES sh "$tmp/clone/.ci/run"
grep -q "not at ../shared/fixtures" "$tmp/out" && ok || bad ".ci/run message: $(head -c 600 "$tmp/out")"

echo "test-ci.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
