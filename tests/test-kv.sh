#!/bin/sh
# test-kv.sh -- the KV cache from the outside: --kv-type in every command and the config file; peak RSS at 32k positions with the whole F16 cache of the qwen2.5-0.5b preset written.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
F=$NATTER_FIXTURES
# kv-rss is a built program next to natter's build (see test-fuzz-replay.sh).
if [ -n "${NATTER_BIN:-}" ] && [ -x "$(dirname "$NATTER_BIN")/tests/kv-rss" ]; then
	B="$(dirname "$NATTER_BIN")/tests"
else
	B=$(dirname "$0")
fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"
unset NATTER_DB

# A bad type is a usage error naming the option and the choices, in every
# command that takes one.
for cmd in "generate -p x" "eval --tokens 1 --logits-out $tmp/x" "bench" "chat --plain" "serve" "perplexity -f x" \
	"eval-choice -f x" ""; do
	# shellcheck disable=SC2086
	"$NATTER_BIN" $cmd -m "$tmp/none.gguf" --kv-type q4 < /dev/null > /dev/null 2> "$tmp/err"
	st=$?
	[ $st -eq 2 ] && grep -q "kv-type: 'q4' is not a KV cache type (f16, q8_0, f32)" "$tmp/err" && ok ||
		bad "natter $cmd --kv-type q4: status $st, $(cat "$tmp/err")"
done

# The whole preset (24 layers, 2 KV heads of 64, Q8_0): an F16 cache of
# 24 x 32768 x 2 (K, V) x 128 x 2 bytes = 384 MiB.  The bound: the file +
# that cache + 100 MiB for everything else, which must not grow with the
# context (an F32 cache, 384 MiB more, cannot hide in it).
layers=24
n_ctx=32768
if ! "$NATTER_BIN" mkmodel --preset qwen2.5-0.5b --type Q8_0 -o "$tmp/q.gguf" >/dev/null; then
	echo "FAIL: mkmodel"
	exit 1
fi
size=$(wc -c < "$tmp/q.gguf" | tr -d ' ')
kv=$((layers * n_ctx * 2 * 128 * 2))
limit=$((size + kv + 100 * 1048576))
sanitized=0
"$NATTER_BIN" --version | grep -q sanitizers && sanitized=1

out=$("$B/kv-rss" "$tmp/q.gguf" $n_ctx f16) || bad "kv-rss f16 failed"
rss=$(echo "$out" | sed -n 's/^peak_rss \([0-9]*\) cache \([0-9]*\)$/\1/p')
cache=$(echo "$out" | sed -n 's/^peak_rss \([0-9]*\) cache \([0-9]*\)$/\2/p')
[ "$cache" = "$kv" ] && ok || bad "f16 cache is $cache bytes, want $kv"
echo "f16 cache, $n_ctx positions all written, $layers layers: peak RSS $rss bytes," \
	"limit $limit (file $size + cache $kv + 100 MiB); the rest is $(( (rss - size - kv) / 1048576 )) MiB"
if [ $sanitized = 1 ]; then
	echo "(sanitizer build: its shadow memory inflates RSS; the bounds are not checked)"
else
	[ -n "$rss" ] && [ "$rss" -le "$limit" ] && ok || bad "peak RSS $rss > $limit"
fi

# The check has teeth: the same session with an F32 cache does not fit the
# F16 bound.
out=$("$B/kv-rss" "$tmp/q.gguf" $n_ctx f32) || bad "kv-rss f32 failed"
rss32=$(echo "$out" | sed -n 's/^peak_rss \([0-9]*\) cache.*/\1/p')
echo "f32 cache: peak RSS $rss32 bytes"
if [ $sanitized = 0 ]; then
	[ -n "$rss32" ] && [ "$rss32" -gt "$limit" ] && ok || bad "an f32 cache fits the f16 bound ($rss32 <= $limit)"
fi

if [ ! -d "$F" ]; then
	echo "SKIP: fixtures not found; $pass passed, $fail failed"
	[ $fail -eq 0 ] && exit 77 || exit 1
fi

# The type reaches the cache: f32, f16 and q8_0 logits all differ, q8_0 the
# most (tiny-qwen2: heads of 64).
M="$F/models/tiny-qwen2-f32.gguf"
for t in f32 f16 q8_0; do
	"$NATTER_BIN" eval -m "$M" --tokens 1,303,281,269,435,447,328 --logits-out "$tmp/$t.bin" --kv-type $t ||
		bad "eval --kv-type $t"
done
cmp -s "$tmp/f32.bin" "$tmp/f16.bin" && bad "f16 and f32 caches gave the same logits" || ok
cmp -s "$tmp/f16.bin" "$tmp/q8_0.bin" && bad "q8_0 and f16 caches gave the same logits" || ok
"$NATTER_BIN" bench -m "$M" -p 8 -n 2 -r 1 --kv-type q8_0 --json | grep -q '"kv_type":"q8_0"' && ok ||
	bad "bench --json does not report its KV type"
# bench's batches: a prompt longer than -b goes in batches of -b.
"$NATTER_BIN" bench -m "$M" -p 4,12 -n 0 -r 1 -b 5 --json | grep -q '"n_ubatch":5' && ok ||
	bad "bench -b 5 does not report batches of 5"
"$NATTER_BIN" bench -m "$M" -p 4 -n 0 -r 1 --json | grep -q '"n_ubatch":4' && ok ||
	bad "bench -p 4: batches of 4 (the prompt) expected"
# Each prompt test is run once untimed first, as llama-bench does, unless
# --no-warmup; the JSON says which.
"$NATTER_BIN" bench -m "$M" -p 4 -n 1 -r 1 --json | grep -q '"warmup":true' && ok ||
	bad "bench --json does not say it warmed up"
"$NATTER_BIN" bench -m "$M" -p 4 -n 1 -r 1 --no-warmup --json | grep -q '"warmup":false' && ok ||
	bad "bench --no-warmup --json does not say it did not warm up"
"$NATTER_BIN" bench -m "$M" -b 0 > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 2 ] && grep -q "bench: -b takes 1..65536" "$tmp/err" && ok || bad "bench -b 0: status $st, $(cat "$tmp/err")"

# Heads of 16 cannot be cut in blocks of 32: q8_0 is refused with the reason
# (here from the command line, the config file, and for the server).
A="$F/models/aidreams260K-f32.gguf"
"$NATTER_BIN" generate -m "$A" -p "Once" -n 2 --kv-type q8_0 > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 1 ] && grep -q "q8_0 KV cache needs head dimensions that are multiples of 32" "$tmp/err" && ok ||
	bad "generate q8_0 on heads of 16: status $st, $(cat "$tmp/err")"
"$NATTER_BIN" generate -m "$A" -p "Once" -n 2 --kv-type f32 > /dev/null && ok || bad "generate --kv-type f32"
mkdir -p "$tmp/config/natter"
printf 'kv_type = q8_0\n' > "$tmp/config/natter/config"
echo "/quit" | "$NATTER_BIN" chat -m "$A" --plain --no-history > /dev/null 2> "$tmp/err"
grep -q "multiples of 32" "$tmp/err" && ok || bad "config kv_type = q8_0 not used: $(cat "$tmp/err")"
echo "/quit" | "$NATTER_BIN" chat -m "$A" --plain --no-history --kv-type f16 > /dev/null 2> "$tmp/err" && ok ||
	bad "--kv-type f16 does not override the config: $(cat "$tmp/err")"
printf 'kv_type = f8\n' > "$tmp/config/natter/config"
echo "/quit" | "$NATTER_BIN" chat -m "$A" --plain --no-history > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 2 ] && grep -qF "config:1: kv_type: 'f8' is not a KV cache type" "$tmp/err" && ok ||
	bad "bad config kv_type: status $st, $(cat "$tmp/err")"
rm -f "$tmp/config/natter/config"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
