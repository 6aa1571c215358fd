#!/bin/sh
# test-tiers.sh -- test-golden, test-quant's mm_matmul checks and attention's tier once per kernel tier this CPU
# has (forced with NATTER_CPU), and NATTER_CPU's refusals.
: "${NATTER_BIN:=./natter}"
dir=$(cd "$(dirname "$0")" && pwd)
tests_dir=${NATTER_TESTS_DIR:-$(dirname "$NATTER_BIN")/tests}
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The tiers natter info --cpu calls available (the scalar one always is).
"$NATTER_BIN" info --cpu > "$tmp/cpu" 2>&1 || bad "natter info --cpu failed: $(cat "$tmp/cpu")"
tiers=$(awk '$NF == "available" { print $1 }' "$tmp/cpu")
missing=$(awk '$NF == "built)" { print $1 }' "$tmp/cpu")
echo "tiers available: $(echo $tiers)"
echo "$tiers" | grep -qx scalar && ok || bad "the scalar tier is not listed as available"

for t in $tiers; do
	NATTER_CPU=$t "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1 || bad "NATTER_CPU=$t refused"
	grep -qx "chosen: *$t" "$tmp/out" && ok || bad "NATTER_CPU=$t: $(grep chosen "$tmp/out")"
	NATTER_CPU=$t "$tests_dir/test-golden" > "$tmp/golden" 2>&1
	rc=$?
	if [ $rc -eq 77 ]; then
		echo "SKIP: test-golden has no fixtures"
	elif [ $rc -eq 0 ] && grep -q "(kernels: $t)" "$tmp/golden"; then
		ok
		echo "$t: $(tail -n 2 "$tmp/golden" | tr '\n' ' ')"
	else
		bad "test-golden under NATTER_CPU=$t (status $rc): $(grep -E 'FAIL|kernels' "$tmp/golden" | head -n 5)"
	fi
	NATTER_CPU=$t TEST_ATTN_TIER_ONLY=1 "$tests_dir/test-attn" > "$tmp/attn" 2>&1 && ok ||
		bad "test-attn under NATTER_CPU=$t: $(cat "$tmp/attn")"
	echo "$t: $(grep '^kernels' "$tmp/attn")"
	NATTER_CPU=$t TEST_QUANT_MATMUL_ONLY=1 "$tests_dir/test-quant" > "$tmp/quant" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && grep -q "^mm_matmul on $t," "$tmp/quant"; then
		ok
		echo "$t: $(grep '^mm_matmul' "$tmp/quant")"
	else
		bad "test-quant under NATTER_CPU=$t (status $rc): $(grep FAIL "$tmp/quant" | head -n 5)"
	fi
done

# A tier that is not one, and one this CPU lacks: refused, status 2, a message.
NATTER_CPU=frobnicate "$NATTER_BIN" info --cpu > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "NATTER_CPU=frobnicate is not a CPU tier" "$tmp/err" && ok || bad "unknown tier: $(cat "$tmp/err")"
for t in $missing; do
	NATTER_CPU=$t "$NATTER_BIN" info --cpu > /dev/null 2> "$tmp/err"
	[ $? -eq 2 ] && grep -q "NATTER_CPU=$t: this CPU lacks" "$tmp/err" && ok || bad "missing tier $t: $(cat "$tmp/err")"
	NATTER_CPU=$t "$NATTER_BIN" eval -m /nonexistent --tokens 1 --logits-out "$tmp/x" > /dev/null 2> "$tmp/err"
	[ $? -eq 2 ] && grep -q "this CPU lacks" "$tmp/err" && ok || bad "eval with missing tier $t: $(cat "$tmp/err")"
done

# Generation's read-ahead: the CPU maker's measured distances (Intel's
# row, or AMD's as everyone else's), named with the tier; NATTER_PREFETCH
# sets two (the float rows' and the L2 read's then the maker's), three
# or four, or is refused.
vendor=$(awk -F': *' '/^vendor_id/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
"$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
if grep -qx "chosen: *scalar" "$tmp/out"; then
	grep -qx 'read-ahead: none (the portable tier)' "$tmp/out" && ok || bad "read-ahead, scalar: $(grep read-ahead "$tmp/out")"
elif [ "$vendor" = GenuineIntel ]; then
	grep -qx 'read-ahead: 2048 bytes in 32-weight blocks, 1024 in K-quants, 2048 in float rows, and past that into L2 (measured on Intel CPUs; .*)' "$tmp/out" &&
		ok || bad "read-ahead on Intel: $(grep read-ahead "$tmp/out")"
else
	grep -q '^read-ahead: .*(measured on AMD CPUs: the default; ' "$tmp/out" && ok ||
		bad "read-ahead on $vendor: $(grep read-ahead "$tmp/out")"
fi
for t in $tiers; do
	[ $t = scalar ] && continue
	# Without F and L2 the table's stay (the maker's, as info says them).
	NATTER_CPU=$t "$NATTER_BIN" info --cpu > "$tmp/def" 2>&1
	f=$(sed -n 's/^read-ahead: .*K-quants, \([0-9]*\) in float rows.*/\1/p' "$tmp/def")
	l2=$(sed -n 's/^read-ahead: .* in float rows\(, and past that into L2\)\{0,1\} (.*/\1/p' "$tmp/def")
	NATTER_CPU=$t NATTER_PREFETCH=576,4160 "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
	grep -qx "read-ahead: 576 bytes in 32-weight blocks, 4160 in K-quants, ${f:-?} in float rows$l2 (set by NATTER_PREFETCH)" \
		"$tmp/out" && ok || bad "NATTER_PREFETCH=576,4160 on $t (float rows ${f:-unknown}): $(grep read-ahead "$tmp/out")"
	NATTER_CPU=$t NATTER_PREFETCH=576,4160,1088,1 "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
	grep -qx 'read-ahead: 576 bytes in 32-weight blocks, 4160 in K-quants, 1088 in float rows, and past that into L2 (set by NATTER_PREFETCH)' \
		"$tmp/out" && ok || bad "NATTER_PREFETCH=576,4160,1088,1 on $t: $(grep read-ahead "$tmp/out")"
	NATTER_CPU=$t NATTER_PREFETCH=576,4160,1088,0 "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
	grep -qx 'read-ahead: 576 bytes in 32-weight blocks, 4160 in K-quants, 1088 in float rows (set by NATTER_PREFETCH)' \
		"$tmp/out" && ok || bad "NATTER_PREFETCH=576,4160,1088,0 on $t: $(grep read-ahead "$tmp/out")"
	NATTER_CPU=$t NATTER_PREFETCH=576,4160,1088,1 TEST_QUANT_MATMUL_ONLY=1 "$tests_dir/test-quant" > "$tmp/quant" 2>&1 && ok ||
		bad "test-quant under NATTER_PREFETCH=576,4160,1088,1 on $t: $(grep FAIL "$tmp/quant" | head -n 5)"
done
for v in 2048 2048,x -1,0 0,65537 ,1024 1,1, 1,1,x 1,1,-1 1,1,-2 1,1,65537 1,1,1,2 1,1,1,-1 1,1,1, 1,1,1,1,1; do
	NATTER_PREFETCH=$v "$NATTER_BIN" info --cpu > /dev/null 2> "$tmp/err"
	[ $? -eq 2 ] && grep -q "NATTER_PREFETCH=$v is not B32,K" "$tmp/err" && ok || bad "NATTER_PREFETCH=$v: $(cat "$tmp/err")"
done
NATTER_PREFETCH=4k "$NATTER_BIN" eval -m /nonexistent --tokens 1 --logits-out "$tmp/x" > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "NATTER_PREFETCH=4k is not B32,K" "$tmp/err" && ok || bad "eval with NATTER_PREFETCH=4k: $(cat "$tmp/err")"

# Float weights' batches: info --cpu says which way each type goes and
# what was measured; NATTER_FLOAT_GEMM forces a way, or is refused.
"$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
if grep -qx "chosen: *scalar" "$tmp/out"; then   # no tiles of its own
	want='^  F16 +openblas +\(the only way on this tier\)'
else
	want='^  F16 +(tiles|openblas) +\(measured: tiles [0-9.]+ ms, openblas [0-9.]+ ms\)'
fi
grep -Eq "$want" "$tmp/out" && ok || bad "info --cpu, float GEMM: $(grep -A3 '^float' "$tmp/out")"
NATTER_FLOAT_GEMM=openblas "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
grep -Eq '^  F16 +openblas +\(NATTER_FLOAT_GEMM\)' "$tmp/out" && ok || bad "NATTER_FLOAT_GEMM=openblas: $(grep F16 "$tmp/out")"
NATTER_FLOAT_GEMM=fast "$NATTER_BIN" info --cpu > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "NATTER_FLOAT_GEMM=fast is none of tiles, openblas, auto" "$tmp/err" && ok ||
	bad "NATTER_FLOAT_GEMM=fast: $(cat "$tmp/err")"

# bench --sys measures the bfloat16 dot peak where the tier has it
# (avx512bf16: its BF16 GEMM runs on vdpbf16ps, and a BF16 matrix's
# prompt bound is set by that peak), nowhere else.
if "$NATTER_BIN" mkmodel --preset tiny --type BF16 -o "$tmp/bf16.gguf" > /dev/null 2> "$tmp/err"; then
	for t in avx512bf16 avx512vnni avx2; do
		echo "$tiers" | grep -qx "$t" || continue
		NATTER_CPU=$t "$NATTER_BIN" bench -m "$tmp/bf16.gguf" -p 16 -n 0 -r 1 -t 1 --sys > "$tmp/b.out" 2>&1
		NATTER_CPU=$t "$NATTER_BIN" bench -m "$tmp/bf16.gguf" -p 16 -n 0 -r 1 -t 1 --sys --json > "$tmp/b.json" 2>&1
		if [ $t = avx512bf16 ]; then
			grep -Eq '"bf16_gflops":[0-9.e+]*[1-9]' "$tmp/b.json" &&
			    grep -Eq "^machine .*, bf16 dot [0-9]+ GFLOP/s;" "$tmp/b.out" &&
			    grep -q "bf16 dot peak for BF16 ones" "$tmp/b.out" && ok ||
			    bad "bench --sys on $t measured no bf16 dot peak: $(cat "$tmp/b.out" "$tmp/b.json")"
		else
			grep -Eq '"fma_gflops":[0-9.e+]*[1-9]' "$tmp/b.json" && ! grep -Eq "bf16_gflops|bf16 dot" "$tmp/b.json" "$tmp/b.out" && ok ||
			    bad "bench --sys on $t: a bf16 peak, or no float peak: $(cat "$tmp/b.out" "$tmp/b.json")"
		fi
		# and names the read-ahead with the tier, as info --cpu does
		NATTER_CPU=$t "$NATTER_BIN" info --cpu > "$tmp/out" 2>&1
		ra=$(sed -n 's/^read-ahead: \([0-9]*\) bytes in 32-weight blocks, \([0-9]*\) in K-quants, \([0-9]*\) in float rows.*/\1\/\2\/\3/p' \
		    "$tmp/out")
		b=${ra%%/*} f=${ra##*/} k=${ra#*/} k=${k%/*}
		l2=false l2s=
		grep -q "in float rows, and past that into L2 (" "$tmp/out" && l2=true l2s=", and past that into L2"
		grep -q "kernel tier $t (read-ahead $ra bytes$l2s)" "$tmp/b.out" && grep -q "\"read_ahead_b32\":$b," "$tmp/b.json" &&
		    grep -q "\"read_ahead_k\":$k," "$tmp/b.json" && grep -q "\"read_ahead_f\":$f," "$tmp/b.json" &&
		    grep -q "\"read_ahead_l2\":$l2," "$tmp/b.json" && ok ||
		    bad "bench on $t does not name the read-ahead ($ra): $(grep -E '^model|read_ahead' "$tmp/b.out" "$tmp/b.json" | head -c 600)"
		echo "$t: $(grep '^machine' "$tmp/b.out")"
	done
else
	bad "mkmodel --type BF16: $(cat "$tmp/err")"
fi

echo "test-tiers: $pass passed, $fail failed"
[ $fail -eq 0 ]
