#!/bin/sh
# fuzz.sh -- builds the libFuzzer targets (make fuzz) and runs each for SECONDS,
# seeding corpora from the shared fixtures at run time; exits 1 if a target
# found a crash (its input in fuzz/crashes/, its report in fuzz/TARGET.log).
#   usage: tools/fuzz.sh [SECONDS] [TARGET...]     (from the build directory)
# FUZZ_TIMEOUT=S: an input running longer than S seconds is a failure (10).
set -e
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"gguf tok tmpl export remote model"}
fx=${NATTER_FIXTURES:-$(dirname "$0")/../../shared/fixtures}
make -j"$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)" fuzz >/dev/null
mkdir -p fuzz/corpus fuzz/crashes
failed=
for t in $targets; do
	c=fuzz/corpus/$t
	mkdir -p "$c"
	opts=
	case $t in
	gguf)
		# Small fixture models and vocabularies, and their first kilobytes.
		for f in "$fx"/models/aidreams260K-f16.gguf "$fx"/models/tiny-*-q4_0.gguf "$fx"/vocab/ggml-vocab-llama-spm.gguf; do
			[ -f "$f" ] && head -c 65536 "$f" > "$c/$(basename "$f").head" && cp "$f" "$c/" 2>/dev/null || true
		done ;;
	tok)
		export NATTER_FUZZ_VOCAB="$fx/vocab/vocab-qwen2.gguf"
		[ -f "$fx/vocab/vocab-qwen2.gguf.inp" ] && awk 'BEGIN{RS="\n__ggml_vocab_test__\n"} {f=sprintf("'"$c"'/v%03d", NR); printf "\001%s", $0 > f}' "$fx/vocab/vocab-qwen2.gguf.inp" ;;
	tmpl)
		for f in "$fx"/templates/*.jinja; do
			[ -f "$f" ] && { cat "$f"; printf '\000system\000Be kind.\000user\000Hi\000assistant\000Hello\000user\000Bye'; } > "$c/$(basename "$f")"
		done ;;
	export)
		printf 'Hello\377\376there\000 world "quoted" \\ \033[31m' > "$c/seed1" ;;
	remote)
		# The regressions: recorded streams of the servers natter --remote reads.
		cp "$(dirname "$0")"/../fuzz/regress/remote/* "$c/" ;;
	model)
		# A small model of each architecture, loaded and run whole, and its
		# first 64 KiB (the target pads its input with zeros).
		for m in aidreams260K-f16 tiny-llama-q2_k tiny-qwen2-q4_0 tiny-phi3lr-q4_0 tiny-qwen3moe-q4_k_m \
		    tiny-llamamoe-iq4_xs tiny-gemma2-q4_0 tiny-gemma3-q8_0 tiny-qwen35-q8_0; do
			f=$fx/models/$m.gguf
			[ -f "$f" ] && head -c 65536 "$f" > "$c/$m.head" && cp "$f" "$c/" || true
		done
		opts=-max_len=2097152 ;;
	esac
	echo "== fuzz-$t for ${secs}s"
	s=0
	./fuzz/fuzz-$t $opts -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -artifact_prefix=fuzz/crashes/$t- \
		-print_final_stats=1 "$c" > fuzz/$t.log 2>&1 || s=$?
	grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|Done|==.*ERROR|SUMMARY)|cov:" fuzz/$t.log |
		tail -n 4
	if [ $s -ne 0 ]; then
		echo "fuzz-$t: FAILED (status $s; its output in fuzz/$t.log, the input in fuzz/crashes/)"
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz.sh: failed:$failed"
	exit 1
fi
