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

echo "test-cli.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
