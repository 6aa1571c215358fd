#!/bin/sh
# run.sh -- makes the benchmark models (random weights, real shapes) and prints,
# for every kernel tier this CPU has, each type's prompt and generation speed as
# a share of the bound the machine sets (measured by natter bench --sys with that
# tier's own kernels).  Not part of make check: it writes about 2.3 GB and takes
# a long while (pp4096 on every tier).
#   usage: tests/bench/run.sh [DIR] [THREADS]     (from the build directory)
#   environment: NATTER_BIN (./natter); PRESET (qwen2.5-0.5b: the shapes, one
#   of natter mkmodel's presets; qwen3-0.6b's 1024 inputs make its Q4_K_M
#   real Q4_K and Q6_K matrices, where qwen2.5-0.5b's 896 make most of them
#   Q5_0); TIERS (default: every tier available);
#   TYPES (F16 Q8_0 Q4_0 Q4_K_M); PROMPTS (128,512,4096); GEN (32); REPS (2);
#   NATTER_BASE, another natter (an older build, say): measured on the same
#   tests right after each line, for ratios taken within one run, with
#   NATTER_CPU set to the line's tier (a build without tiers ignores it and
#   runs its own kernels).  LLAMA_BENCH, a llama-bench command: measured on
#   the same tests after each line of the first tier (llama.cpp picks its
#   own kernels), for the same ratios.
set -e
dir=${1:-/tmp/natter-bench}
threads=${2:-2}
natter=${NATTER_BIN:-./natter}
preset=${PRESET:-qwen2.5-0.5b}
types=${TYPES:-F16 Q8_0 Q4_0 Q4_K_M}
prompts=${PROMPTS:-128,512,4096}
gen=${GEN:-32}
reps=${REPS:-2}
mkdir -p "$dir"
# model_file TYPE: the benchmark model of that type.
model_file() { echo "$dir/$preset-$(echo "$1" | tr A-Z a-z).gguf"; }
for t in $types; do
	f=$(model_file "$t")
	[ -f "$f" ] || "$natter" mkmodel --preset "$preset" --type "$t" -o "$f"
done
tiers=${TIERS:-$("$natter" info --cpu | awk '$NF == "available" { print $1 }')}
lead=$(echo $tiers | cut -d' ' -f1)   # the tier llama.cpp's lines go under

# field JSON NAME: a number from one JSON line.
field() { echo "$1" | sed -n "s/.*\"$2\": *\([-0-9.e+]*\).*/\1/p" | head -n 1; }
# row LABEL JSON-LINES: t/s of each test, with its share of the bound when known.
row() {
	printf '%-10s' "$1"
	echo "$2" | while read -r l; do
		ts=$(field "$l" avg_ts)
		share=$(field "$l" bound_share)
		alone=$(field "$l" jobs_alone)
		if [ -n "$share" ]; then
			awk -v a="$ts" -v s="$share" 'BEGIN { printf " %8.1f (%3.0f%%)", a, 100 * s }'
		else
			awk -v a="$ts" 'BEGIN { printf " %8.1f       ", a }'
		fi
		if [ -n "$alone" ] && [ "$alone" != 0 ]; then printf '!'; fi
	done
	echo
}

echo "$preset shapes, random weights, $threads threads, mean of $reps runs; t/s (share of the bound)"
echo "bound: prompt by compute (int8 peak for quantized matrices, float FMA peak for the rest and the"
echo "attention; the output and the last layer past its keys and values once per prompt, as they run),"
echo "generation by reading the weights and the KV cache once per token, at the rate"
echo "natter read the weights alone between the tokens it timed (bench --sys); a ! after a figure:"
echo "some of its jobs ran on one thread, the load average saying other programs wanted the CPUs"
for tier in $tiers; do
	first=1
	for t in $types; do
		f=$(model_file "$t")
		out=$(NATTER_CPU=$tier "$natter" bench -m "$f" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" --sys --json)
		if [ $first = 1 ]; then
			l=$(echo "$out" | head -n 1)
			echo
			awk -v t="$tier" -v b="$(field "$l" mem_read_gbps)" -v f="$(field "$l" fma_gflops)" \
			    -v i="$(field "$l" int8_gops)" -v s="$(field "$l" sgemm_gflops)" 'BEGIN {
				printf "tier %s: memory read %.1f GB/s, float FMA %.0f GFLOP/s, int8 %.0f GOPS" \
				    " (OpenBLAS sgemm %.0f GFLOP/s)\n", t, b, f, i, s }'
			printf '%-10s' type
			for p in $(echo "$prompts" | tr , ' '); do printf ' %15s' "pp$p"; done
			for g in $(echo "$gen" | tr , ' '); do printf ' %15s' "tg$g"; done
			echo
			first=0
		fi
		row "$(echo "$t" | tr A-Z a-z)" "$out"
		if [ -n "$NATTER_BASE" ]; then
			# One test per run: an older natter may not take lists.
			base=""
			for p in $(echo "$prompts" | tr , ' '); do
				base="$base$(NATTER_CPU=$tier "$NATTER_BASE" bench -m "$f" -t "$threads" -p "$p" -n 0 -r "$reps" --json)
"
			done
			for g in $(echo "$gen" | tr , ' '); do
				base="$base$(NATTER_CPU=$tier "$NATTER_BASE" bench -m "$f" -t "$threads" -p 0 -n "$g" -r "$reps" --json)
"
			done
			row "  base" "$(echo "$base" | grep avg_ts)"
		fi
		if [ -n "$LLAMA_BENCH" ] && [ "$tier" = "$lead" ]; then
			row "  llama" "$($LLAMA_BENCH -m "$f" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" -o jsonl 2>/dev/null |
			    grep avg_ts)"
		fi
	done
done
