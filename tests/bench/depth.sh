#!/bin/sh
# depth.sh -- generation speed after DEPTH tokens of context as a share of
# the speed at an empty context, from alternating pairs of runs (natter bench
# -d 0, then natter bench -d DEPTH), so that a machine whose speed drifts
# over minutes moves both halves of a pair alike.  Prints each pair's tg
# figures and ratio, then the median ratio.  Not part of make check.
#   usage: tests/bench/depth.sh MODEL [PAIRS] [DEPTH]   (from the build directory)
#   environment: NATTER_BIN (./natter); GEN (32); REPS (3); THREADS (2)
set -e
model=${1:?usage: depth.sh MODEL [PAIRS] [DEPTH]}
pairs=${2:-6}
depth=${3:-4000}
natter=${NATTER_BIN:-./natter}
gen=${GEN:-32}
reps=${REPS:-3}
threads=${THREADS:-2}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# The t/s of the one tg line of a bench run.
tg() {
	"$natter" bench -m "$model" -p 0 -n "$gen" -d "$1" -r "$reps" -t "$threads" |
		awk -F'|' '/ tg/ { split($3, v, " "); print v[1] }'
}

echo "pair  tg$gen@d0  tg$gen@d$depth  ratio  (load)"
i=1
while [ $i -le "$pairs" ]; do
	a=$(tg 0)
	b=$(tg "$depth")
	r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
	echo "$r" >> "$tmp"
	printf '%4d  %8s  %10s  %s  (%s)\n' $i "$a" "$b" "$r" "$(cut -d' ' -f1 /proc/loadavg)"
	i=$((i + 1))
done
sort -n "$tmp" | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
	printf "median ratio %.3f over %d pairs (lowest %.3f, highest %.3f)\n", m, NR, v[1], v[NR] }'
