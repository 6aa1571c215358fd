#!/bin/sh
# test-cli.sh -- drives the real natter binary: info, tokenize, and their error paths.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
F=$NATTER_FIXTURES
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Usage errors exit 2 with a message.
"$NATTER_BIN" frobnicate >/dev/null 2>"$tmp/err"; check "unknown command status" 2 $?
grep -q "unknown command 'frobnicate'" "$tmp/err" && ok || bad "unknown command message"
"$NATTER_BIN" --help | grep -q "tokenize -m FILE" && ok || bad "--help lists tokenize"

# A missing and a non-GGUF file: exit 1, message names the file.
"$NATTER_BIN" info -m "$tmp/nope.gguf" 2>"$tmp/err"; check "missing file status" 1 $?
grep -q "nope.gguf: cannot open" "$tmp/err" && ok || bad "missing file message: $(cat "$tmp/err")"
echo "hello" > "$tmp/text.gguf"
"$NATTER_BIN" info -m "$tmp/text.gguf" 2>"$tmp/err"; check "text file status" 1 $?
grep -q "text.gguf: not a GGUF file" "$tmp/err" && ok || bad "text file message: $(cat "$tmp/err")"

if [ ! -d "$F" ]; then
	echo "SKIP: fixtures not found; $pass passed, $fail failed"
	[ $fail -eq 0 ] && exit 77 || exit 1
fi

out=$("$NATTER_BIN" info -m "$F/models/tiny-qwen2-q4_k_m.gguf")
echo "$out" | grep -q "architecture:   qwen2" && ok || bad "info architecture"
echo "$out" | grep -q "Q4_K" && ok || bad "info tensor table"
echo "$out" | grep -q "chat template:" && ok || bad "info chat template line"
"$NATTER_BIN" info -m "$F/vocab/vocab-qwen2.gguf" | grep -q "pre-tokenizer qwen2" && ok || bad "info pre-tokenizer"

# tokenize: ids on one line separated by single spaces; BOS by default for SPM.
check "tokenize aidreams" "1 303 281 269 435 447 328 277 268" \
	"$("$NATTER_BIN" tokenize -m "$F/models/aidreams260K-f32.gguf" "I dreamed that")"
check "tokenize --no-bos" "303 281 269 435 447 328 277 268" \
	"$("$NATTER_BIN" tokenize -m "$F/models/aidreams260K-f32.gguf" --no-bos "I dreamed that")"
printf 'I dreamed that' > "$tmp/p.txt"
check "tokenize -f" "1 303 281 269 435 447 328 277 268" \
	"$("$NATTER_BIN" tokenize -m "$F/models/aidreams260K-f32.gguf" -f "$tmp/p.txt")"
# Special tokens are parsed only when asked.
check "tokenize --special" "151644 872 198 9707 151645" \
	"$("$NATTER_BIN" tokenize -m "$F/vocab/vocab-qwen2.gguf" --special "<|im_start|>user
Hello<|im_end|>")"
check "tokenize specials as text" "27 91 318 4906 91 29" \
	"$("$NATTER_BIN" tokenize -m "$F/vocab/vocab-qwen2.gguf" "<|im_start|>")"
# Invalid UTF-8 still tokenizes (byte by byte), status 0.
printf 'caf\351 \377' > "$tmp/bad.txt"
"$NATTER_BIN" tokenize -m "$F/vocab/vocab-llama3.gguf" -f "$tmp/bad.txt" >/dev/null; check "invalid utf-8 status" 0 $?
printf 'caf\351' > "$tmp/bad2.txt"
# SentencePiece: the stray byte 0xE9 falls back to its byte token <0xE9> (id 3 + 0xE9).
check "invalid utf-8 spm byte fallback" "1 274 2142 236" \
	"$("$NATTER_BIN" tokenize -m "$F/vocab/ggml-vocab-llama-spm.gguf" -f "$tmp/bad2.txt")"

# eval: logits as float32 rows; batch and incremental give the same rows.
M="$F/models/tiny-qwen2-q4_0.gguf"
"$NATTER_BIN" eval -m "$M" --tokens 1,303,281,269 --logits-out "$tmp/b.bin"; check "eval status" 0 $?
check "eval size" $((4 * 512 * 4)) "$(wc -c < "$tmp/b.bin" | tr -d ' ')"
# A batch and single tokens take different kernels (GEMM, GEMV) and, for
# quantized weights, different activation roundings: the F32 model shows
# the KV-cache path equal up to float rounding (test-golden compares both
# ways of running every quantized file with llama.cpp's logits).
M32="$F/models/tiny-qwen2-f32.gguf"
"$NATTER_BIN" eval -m "$M32" --tokens 1,303,281,269 --logits-out "$tmp/b.bin"
"$NATTER_BIN" eval -m "$M32" --tokens 1,303,281,269 --logits-out "$tmp/i.bin" --incremental
od -An -f -v -w4 "$tmp/b.bin" > "$tmp/b.od"; od -An -f -v -w4 "$tmp/i.bin" > "$tmp/i.od"
paste "$tmp/b.od" "$tmp/i.od" | awk '{ d = $1 - $2; d = d < 0 ? -d : d; a = $1 < 0 ? -$1 : $1;
	if (d > m) m = d; if (a > x) x = a } END { exit !(NR == 2048 && m <= 1e-4 * x) }' &&
	ok || bad "batch and incremental logits differ beyond float rounding"
"$NATTER_BIN" eval -m "$M" --tokens 1,99999 --logits-out "$tmp/x.bin" 2>"$tmp/err"; check "eval bad id status" 1 $?
grep -q "token id 99999 is out of range" "$tmp/err" && ok || bad "eval bad id message: $(cat "$tmp/err")"
"$NATTER_BIN" eval -m "$M" --tokens 1,x --logits-out "$tmp/x.bin" 2>/dev/null; check "eval bad list status" 2 $?

# generate: greedy reproduces the reference continuation of aidreams.
check "generate greedy" "rices, 0.0000000. Dimensions unfold, 0." \
	"$("$NATTER_BIN" generate -m "$F/models/aidreams260K-f32.gguf" -p "I dreamed that" -n 24 --temp 0)"
a=$("$NATTER_BIN" generate -m "$F/models/aidreams260K-f32.gguf" -p "Once" -n 20 --seed 7)
b=$("$NATTER_BIN" generate -m "$F/models/aidreams260K-f32.gguf" -p "Once" -n 20 --seed 7)
check "generate same seed, same text" "$a" "$b"
[ -n "$a" ] && ok || bad "generate printed nothing"
long=$(head -c 3000 /dev/zero | tr '\0' 'a')
"$NATTER_BIN" generate -m "$F/models/aidreams260K-f32.gguf" -p "$long" -n 4 2>"$tmp/err"; check "prompt longer than context status" 1 $?
grep -q "more than the context" "$tmp/err" && ok || bad "long prompt message: $(cat "$tmp/err")"

# Peak RSS while generating on real Qwen2.5-0.5B widths (2 of 24 layers):
# within the file size plus the KV cache plus 64 MiB.
if "$NATTER_BIN" mkmodel --preset qwen2.5-0.5b --type Q8_0 --layers 2 -o "$tmp/q.gguf"; then
	ok
	size=$(wc -c < "$tmp/q.gguf" | tr -d ' ')
	js=$("$NATTER_BIN" bench -m "$tmp/q.gguf" -p 256 -n 16 -r 1 --json | tail -n 1)
	rss=$(echo "$js" | sed 's/.*"peak_rss_bytes":\([0-9.e+]*\).*/\1/')
	# KV cache: 2 (K, V) x 2 layers x 273 positions x 128 (2 KV heads x 64) x 4 bytes.
	kv=$((2 * 2 * 273 * 128 * 4))
	limit=$((size + kv + 64 * 1048576))
	echo "peak RSS $rss bytes, limit $limit (file $size + KV $kv + 64 MiB)"
	if "$NATTER_BIN" --version | grep -q sanitizers; then
		echo "(sanitizer build: its shadow memory inflates RSS; the bound is not checked)"
	else
		awk -v r="$rss" -v l="$limit" 'BEGIN { exit !(r > 0 && r <= l) }' && ok || bad "peak RSS $rss > $limit"
	fi
	"$NATTER_BIN" info -m "$tmp/q.gguf" | grep -q "151936 tokens" && ok || bad "mkmodel vocabulary"
else
	bad "mkmodel failed"
fi

# template: renders a conversation file byte for byte like the fixture.
T="$F/templates/microsoft-Phi-3.5-mini-instruct"
cat > "$tmp/conv.json" <<'JSON'
[{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "What is 2+2?"}]
JSON
printf '<|system|>\nYou are a terse assistant.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n' > "$tmp/want.txt"
"$NATTER_BIN" template --template-file "$T.jinja" --messages "$tmp/conv.json" --add-generation-prompt > "$tmp/got.txt"
cmp -s "$tmp/want.txt" "$tmp/got.txt" && ok || bad "template rendering: $(cat "$tmp/got.txt")"
"$NATTER_BIN" template --template-file "$F/templates/google-gemma-2-2b-it.jinja" --messages "$tmp/conv.json" 2>"$tmp/err"
check "template refusal status" 1 $?
grep -q "System role not supported" "$tmp/err" && ok || bad "template refusal message: $(cat "$tmp/err")"
"$NATTER_BIN" template -m "$F/vocab/vocab-qwen2.gguf" --messages "$tmp/conv.json" --add-generation-prompt | tail -n 1 | grep -q "<|im_start|>assistant" && ok || bad "template from a model"

# chat --plain: replies, slash commands, regeneration, a message too long for the context.
M="$F/models/aidreams260K-f32.gguf"
printf 'Hello\n/set temp 0\n/params\n/regen\n/stats\n/system Be brief.\n/set top_p 7\n/nonsense\n/quit\nignored\n' |
	"$NATTER_BIN" chat -m "$M" --plain -n 8 --seed 5 > "$tmp/chat.out" 2> "$tmp/chat.err"
check "chat status" 0 $?
grep -q "temp 0," "$tmp/chat.out" && ok || bad "chat /set temp took no effect: $(cat "$tmp/chat.out")"
grep -q "reply: 8 tokens" "$tmp/chat.out" && ok || bad "chat /stats after /regen"
grep -q "system prompt set" "$tmp/chat.out" && ok || bad "chat /system"
grep -q "top-p must be" "$tmp/chat.err" && ok || bad "chat /set with a bad value: $(cat "$tmp/chat.err")"
grep -q "unknown command /nonsense" "$tmp/chat.err" && ok || bad "chat unknown command"
long=$(head -c 4000 /dev/zero | tr '\0' 'x')
printf '%s\nshort one\n/stats\n' "$long" | "$NATTER_BIN" chat -m "$M" --plain -n 4 > "$tmp/chat.out" 2> "$tmp/chat.err"
check "chat with a too-long message status" 0 $?
grep -q "more than the context" "$tmp/chat.err" && ok || bad "too-long message error: $(cat "$tmp/chat.err")"
grep -q "reply: 4 tokens" "$tmp/chat.out" && ok || bad "the chat goes on after a too-long message"
# Without --plain, chat is the full-screen chat, which needs a terminal.
"$NATTER_BIN" chat -m "$M" < /dev/null 2>"$tmp/err"; check "chat without --plain and without a terminal status" 2 $?
grep -q "needs a terminal" "$tmp/err" && ok || bad "chat without --plain: $(cat "$tmp/err")"

# The store from the command line: a chat is recorded, rated, searched, exported.
export NATTER_DB="$tmp/h.db"
printf 'Tell me a dream\n/rate up lovely\n/regen\n/rate 2\n/stats\n' |
	"$NATTER_BIN" chat -m "$M" --plain -n 6 --seed 11 > "$tmp/c.out" 2> "$tmp/c.err"
check "chat with history status" 0 $?
grep -q "rated generation 1 up" "$tmp/c.out" && ok || bad "/rate: $(cat "$tmp/c.out" "$tmp/c.err")"
grep -q "stored as generation 2 of conversation 1" "$tmp/c.out" && ok || bad "/stats names the stored generation"
"$NATTER_BIN" history list | grep -q "Tell me a dream" && ok || bad "history list"
"$NATTER_BIN" history show 1 | grep -q 'rated up ("lovely")' && ok || bad "history show"
"$NATTER_BIN" history search dream | grep -q "\[dream\]" && ok || bad "history search"
"$NATTER_BIN" rate 2 3 --comment "better now" | grep -q "rated generation 2 3" && ok || bad "natter rate"
"$NATTER_BIN" rate 99 up 2>"$tmp/err"; check "rate a missing generation status" 1 $?
"$NATTER_BIN" rate 2 7 2>/dev/null; check "rate with a bad value status" 2 $?
"$NATTER_BIN" export --format dpo -o "$tmp/dpo.jsonl" 2>/dev/null; check "export status" 0 $?
check "export dpo lines" 1 "$(wc -l < "$tmp/dpo.jsonl" | tr -d ' ')"
grep -q '"chosen":\[{"role":"assistant"' "$tmp/dpo.jsonl" && ok || bad "dpo line: $(cat "$tmp/dpo.jsonl")"
check "export sft lines (4 stars and up)" 1 "$("$NATTER_BIN" export --format sft | wc -l | tr -d ' ')"
"$NATTER_BIN" export --format xml 2>/dev/null; check "export bad format status" 2 $?
"$NATTER_BIN" history delete 1 | grep -q "deleted conversation 1" && ok || bad "history delete"
"$NATTER_BIN" history show 1 2>/dev/null; check "show a deleted conversation status" 1 $?
printf 'garbage, not a database' > "$tmp/bad.db"
"$NATTER_BIN" history list --db "$tmp/bad.db" 2>"$tmp/err"; check "damaged database status" 1 $?
grep -q "not a natter database" "$tmp/err" && ok || bad "damaged database message: $(cat "$tmp/err")"
check "damaged database left alone" "garbage, not a database" "$(cat "$tmp/bad.db")"
unset NATTER_DB

echo "test-cli.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
