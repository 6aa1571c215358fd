#!/bin/sh
# ci-gate.sh -- runs one test for make check; under CI a skip fails unless it is a missing CPU tier.
#   usage: ci-gate.sh TEST [ARGS...]     (make check's LOG_COMPILER and SH_LOG_COMPILER)
#
# Outside CI the test's status passes through unchanged (0 pass, 77 skip,
# anything else fail).  Under CI (CI=true or CI=1) the rule of tests/test.h
# holds for every test, C or shell:
#   - a line starting "SKIP:" that is not exactly
#     "SKIP: CPU tier NAME not available" fails the test, even if the rest passed;
#   - status 77 without such a CPU-tier line fails the test.
# The test's output is printed whole (stdout and stderr merged, as the log
# would hold them), then the verdict if the gate changed it.
[ $# -ge 1 ] || { echo "usage: ci-gate.sh TEST [ARGS...]" >&2; exit 99; }
case "${CI:-}" in
true|1) ci=1 ;;
*) ci=0 ;;
esac
if [ $ci -eq 0 ]; then
	exec "$@"
fi
out=$(mktemp) || exit 99
trap 'rm -f "$out"' EXIT
"$@" > "$out" 2>&1
s=$?
cat "$out"
tier='^SKIP: CPU tier [A-Za-z0-9_.+-]+ not available$'
bad=$(grep '^SKIP' "$out" | grep -v -E "$tier")
if [ -n "$bad" ]; then
	echo "FAIL (CI): $1 skipped what CI must run; under CI only a missing CPU tier may skip:"
	printf '%s\n' "$bad" | sed 's/^/  /'
	exit 1
fi
if [ $s -eq 77 ] && ! grep -q -E "$tier" "$out"; then
	echo "FAIL (CI): $1 exited 77 (skip) without naming a missing CPU tier"
	exit 1
fi
exit $s
