#!/bin/sh
# lora.sh -- LoRA speed on the qwen2.5-0.5b preset (random weights, real shapes): rank-8 training in Q4_K_M and F16, and generation with and without a rank-8 adapter, interleaved so that ratios within one run can be read on a busy machine.
#   usage: tests/bench/lora.sh [DIR] [ROUNDS] [THREADS]     (from the build directory)
#   DIR (/tmp/natter-lora) receives the two models (about 1.4 GB), the adapter and the logs.
#   environment: NATTER_BIN (./natter); NATTER_SRCDIR (.: tests/data is read there);
#   STEPS (6 training steps a run; the first is left out of the speed); REPS (3: bench -r);
#   CALLGRIND=1 also counts the instructions of a generated token under valgrind (slow: minutes,
#   and valgrind's CPU has no AVX-512, so natter runs its avx2 tier there).
# Each round trains Q4_K_M then F16 (F16 first in even rounds), then benches each
# model without and with the adapter (with it first in even rounds), so that a load
# that rises or falls during a round biases neither side.  Because the wall clock
# of a shared machine moves with other processes' load, each round also measures
# CPU time on one thread, which that load moves much less: a training token's
# (user + system seconds of STEPS steps less those of one step, over the tokens of
# steps 2..STEPS) and a generated token's (bench -n 80 less bench -n 16, over 64
# tokens).  Printed: one line per run with the load average before it, each
# round's ratios, and their medians.  Not part of make check.
set -e
dir=${1:-/tmp/natter-lora}
rounds=${2:-3}
threads=${3:-2}
natter=${NATTER_BIN:-./natter}
src=${NATTER_SRCDIR:-.}
steps=${STEPS:-6}
reps=${REPS:-3}
mkdir -p "$dir"
for t in Q4_K_M F16; do
	f="$dir/qwen2.5-0.5b-$(echo "$t" | tr A-Z a-z).gguf"
	[ -f "$f" ] || "$natter" mkmodel --preset qwen2.5-0.5b --type "$t" -o "$f" >/dev/null
done
q4=$dir/qwen2.5-0.5b-q4_k_m.gguf
f16=$dir/qwen2.5-0.5b-f16.gguf
ad=$dir/r8.gguf
# The adapter: rank 8 on every linear weight, a few steps of SFT (its values do not matter for speed).
[ -f "$ad" ] || "$natter" finetune -m "$q4" --data "$src/tests/data/finetune-sft.jsonl" --chat-template chatml \
	--rank 8 --steps 2 -t "$threads" --seed 1 -o "$ad" >/dev/null 2>&1
load() { cut -d' ' -f1 /proc/loadavg; }
echo "kernel tier: $("$natter" info --cpu | sed -n 's/^chosen: *//p'); $(nproc) CPUs; $threads threads; $rounds rounds"
echo "adapter: $ad ($(stat -c %s "$ad") bytes), $("$natter" bench -m "$q4" -p 1 -n 0 -r 1 --lora "$ad" | grep 'adapters on')"

# train TYPE FILE ROUND: one training run; prints tokens/s over steps 2.. and peak RSS.
train() {
	l=$(load)
	/usr/bin/time -f '%M' -o "$dir/rss" "$natter" finetune -m "$2" --data "$src/tests/data/finetune-sft.jsonl" \
		--chat-template chatml --rank 8 --steps "$steps" -t "$threads" --seed 1 --log "$dir/train.log" \
		-o "$dir/train-out.gguf" >/dev/null 2>&1
	tps=$(awk -F'[:,}]' 'NR > 1 { tok += $8; sec += $8 / $10 } END { printf "%.2f", tok / sec }' "$dir/train.log")
	rss=$(awk '{ printf "%.0f", $1 / 1024 }' "$dir/rss")
	echo "round $3  train $1  load $l  tokens/s $tps  peak RSS $rss MiB"
	eval "tps_$1=$tps"
}
# tcpu TYPE FILE ROUND: CPU milliseconds a training token on one thread: user + system
# seconds of STEPS steps less those of one step, over the tokens of steps 2..STEPS.
tcpu() {
	l=$(load)
	for k in 1 "$steps"; do
		/usr/bin/time -f '%U %S' -o "$dir/tcpu.$k" "$natter" finetune -m "$2" --data "$src/tests/data/finetune-sft.jsonl" \
			--chat-template chatml --rank 8 --steps "$k" -t 1 --seed 1 --log "$dir/tcpu.log" \
			-o "$dir/train-out.gguf" >/dev/null 2>&1
	done
	tok=$(awk -F'[:,}]' 'NR > 1 { tok += $8 } END { print tok }' "$dir/tcpu.log")
	ms=$(cat "$dir/tcpu.1" "$dir/tcpu.$steps" | awk -v tok="$tok" '{ t[NR] = $1 + $2 } END { printf "%.1f", (t[2] - t[1]) * 1000 / tok }')
	echo "round $3  train $1 -t 1  load $l  $ms ms of CPU a token ($tok tokens)"
	eval "tcpu_$1=$ms"
}
# bench FILE NAME ROUND [--lora A]: prints pp128 and tg32 t/s (mean of REPS).
bench() {
	f=$1; n=$2; r=$3; shift 3
	l=$(load)
	out=$("$natter" bench -m "$f" -p 128 -n 32 -r "$reps" -t "$threads" --json "$@")
	pp=$(echo "$out" | sed -n 's/.*"n_prompt":128,.*"avg_ts":\([0-9.]*\).*/\1/p')
	tg=$(echo "$out" | sed -n 's/.*"n_gen":32,.*"avg_ts":\([0-9.]*\).*/\1/p')
	rss=$(echo "$out" | sed -n '1s/.*"peak_rss_bytes":\([0-9]*\).*/\1/p' | awk '{ printf "%.0f", $1 / 1048576 }')
	printf 'round %s  bench %-11s load %s  pp128 %7.2f  tg32 %6.2f t/s  peak RSS %s MiB\n' "$r" "$n" "$l" "$pp" "$tg" "$rss"
	eval "pp_$n=$pp; tg_$n=$tg"
}
# cpu FILE NAME ROUND [--lora A]: CPU milliseconds of one generated token on one thread.
cpu() {
	f=$1; n=$2; r=$3; shift 3
	l=$(load)
	for k in 16 80; do
		/usr/bin/time -f '%U %S' -o "$dir/cpu.$k" "$natter" bench -m "$f" -p 1 -n $k -r 1 -t 1 "$@" >/dev/null
	done
	ms=$(cat "$dir/cpu.16" "$dir/cpu.80" | awk '{ t[NR] = $1 + $2 } END { printf "%.2f", (t[2] - t[1]) * 1000 / 64 }')
	echo "round $r  cpu   $(printf '%-11s' "$n") load $l  $ms ms of CPU a generated token (-t 1)"
	eval "cpu_$n=$ms"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
# turns ROUND A B: runs the commands A and B (strings, evaluated), A first in
# odd rounds and B first in even ones, so that a drift of the machine's speed
# favours neither.
turns() { if [ $(($1 % 2)) = 1 ]; then eval "$2"; eval "$3"; else eval "$3"; eval "$2"; fi; }
: > "$dir/ratios"
r=1
while [ "$r" -le "$rounds" ]; do
	turns "$r" 'train Q4_K_M "$q4" "$r"' 'train F16 "$f16" "$r"'
	turns "$r" 'tcpu Q4_K_M "$q4" "$r"' 'tcpu F16 "$f16" "$r"'
	x=$(ratio "$tcpu_F16" "$tcpu_Q4_K_M")
	echo "round $r  training CPU time a token, F16 / Q4_K_M: $x"
	echo "training-cpu-per-token-F16/Q4_K_M $x" >> "$dir/ratios"
	x=$(ratio "$tps_F16" "$tps_Q4_K_M")
	echo "round $r  training F16 / Q4_K_M tokens/s: $x"
	echo "training-F16/Q4_K_M $x" >> "$dir/ratios"
	for m in q4 f16; do
		eval "f=\$$m"
		turns "$r" 'bench "$f" "${m}_none" "$r"' 'bench "$f" "${m}_lora" "$r" --lora "$ad"'
		eval "a=\$(ratio \$pp_${m}_lora \$pp_${m}_none); b=\$(ratio \$tg_${m}_lora \$tg_${m}_none)"
		echo "round $r  $m with / without the adapter: pp128 $a  tg32 $b"
		printf '%s\n' "$m-pp128-lora/none $a" "$m-tg32-lora/none $b" >> "$dir/ratios"
	done
	for m in q4 f16; do
		eval "f=\$$m"
		turns "$r" 'cpu "$f" "${m}_none" "$r"' 'cpu "$f" "${m}_lora" "$r" --lora "$ad"'
		eval "a=\$(ratio \$cpu_${m}_lora \$cpu_${m}_none)"
		echo "round $r  $m CPU time a token, with / without the adapter: $a"
		echo "$m-cpu-per-token-lora/none $a" >> "$dir/ratios"
	done
	r=$((r + 1))
done
echo "medians over the rounds (lowest - highest):"
for k in $(cut -d' ' -f1 "$dir/ratios" | sort -u); do
	grep "^$k " "$dir/ratios" | cut -d' ' -f2 | sort -n |
		awk -v k="$k" '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
			printf "  %-22s %.3f  (%s - %s)\n", k, m, v[1], v[NR] }'
done
if [ "${CALLGRIND:-0}" = 1 ]; then
	# Instructions of a generated token: bench -n 12 less bench -n 4, over 8 tokens.
	for m in q4 f16; do
		eval "f=\$$m"
		for n in none lora; do
			[ $n = lora ] && a="--lora $ad" || a=
			for k in 4 12; do
				valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$m.$n.$k" "$natter" bench -m "$f" -p 4 -n $k \
					-r 1 -t 1 $a >/dev/null 2>"$dir/cg.$m.$n.$k.err"
			done
			eval "ir_$n=$(for k in 4 12; do sed -n 's/.*I *refs: *//p' "$dir/cg.$m.$n.$k.err" | tr -d ,; done |
				awk '{ v[NR] = $1 } END { printf "%.0f", (v[2] - v[1]) / 8 }')"
		done
		echo "callgrind (avx2 tier), $m: instructions a generated token $ir_none without the adapter, $ir_lora with" \
			"it: $(ratio "$ir_lora" "$ir_none")"
	done
fi
