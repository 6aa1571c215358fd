#!/bin/sh
# run.sh -- makes the benchmark models (random weights, real shapes) and prints
# natter's speed next to this machine's limits, all measured in one run.  Not
# part of make check: it writes about 2.3 GB and takes several minutes.
#   usage: tests/bench/run.sh [DIR] [THREADS]     (from the build directory)
set -e
dir=${1:-/tmp/natter-bench}
threads=${2:-2}
natter=${NATTER_BIN:-./natter}
mkdir -p "$dir"
for t in F16 Q8_0 Q4_0 Q4_K_M; do
	f="$dir/qwen2.5-0.5b-$(echo $t | tr A-Z a-z).gguf"
	[ -f "$f" ] || "$natter" mkmodel --preset qwen2.5-0.5b --type "$t" -o "$f"
done
field() { echo "$1" | sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" | head -n 1; }
sys=$("$natter" bench -m "$dir/qwen2.5-0.5b-q4_0.gguf" -t "$threads" -p 0 -n 1 -r 1 --sys --json)
bw=$(field "$sys" mem_read_gbps)
gf=$(field "$sys" sgemm_gflops)
echo "machine: memory read $bw GB/s, OpenBLAS sgemm $gf GFLOP/s ($threads threads)"
echo "Qwen2.5-0.5B shapes, $threads threads, mean ± sd of 3 runs; roof = tg x bytes per token / bandwidth"
printf '%-7s %8s %16s %16s %16s %6s\n' type MiB "pp128 t/s" "pp512 t/s" "tg32 t/s" roof
for t in f16 q8_0 q4_0 q4_k_m; do
	f="$dir/qwen2.5-0.5b-$t.gguf"
	a=$("$natter" bench -m "$f" -t "$threads" -p 128 -n 0 -r 3 --json)
	b=$("$natter" bench -m "$f" -t "$threads" -p 512 -n 0 -r 3 --json)
	c=$("$natter" bench -m "$f" -t "$threads" -p 0 -n 32 -r 3 --json)
	size=$(field "$c" model_size)
	awk -v t="$t" -v s="$size" -v a="$(field "$a" avg_ts)" -v as="$(field "$a" stddev_ts)" \
	    -v b="$(field "$b" avg_ts)" -v bs="$(field "$b" stddev_ts)" \
	    -v c="$(field "$c" avg_ts)" -v cs="$(field "$c" stddev_ts)" -v bw="$bw" 'BEGIN {
		printf "%-7s %8.0f %9.1f ± %4.1f %9.1f ± %4.1f %9.1f ± %4.1f %5.0f%%\n",
		    t, s / 1048576, a, as, b, bs, c, cs, 100 * c * s / (bw * 1e9) }'
done
