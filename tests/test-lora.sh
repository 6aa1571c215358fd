#!/bin/sh
# test-lora.sh -- LoRA adapters from the command line: --lora in every front end, bad adapters refused by name, an adapter trained on another model told in every front end, perplexity's KL against eval's logits, adapters recorded with each generation, /lora and A/B capture in chat --plain and the full screen, export --adapter and --format dpo.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
F=$NATTER_FIXTURES
D=$NATTER_SRCDIR/tests/data
M=$F/models/aidreams260K-f32.gguf
M16=$F/models/aidreams260K-f16.gguf
LL=$F/models/tiny-llama-f32.gguf
# lora-bad is a built program: next to natter's build.
if [ -n "${NATTER_BIN:-}" ]; then B="$(dirname "$NATTER_BIN")/tests"; else B=$(dirname "$0"); fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
has() { # has LABEL FILE TEXT: FILE holds TEXT (fixed string)
	if grep -qF -- "$3" "$2"; then ok; else bad "$1: no [$3] in: $(head -c 600 "$2")"; fi
}
for tool in python3 sqlite3; do
	if ! command -v $tool >/dev/null 2>&1; then echo "SKIP: $tool is needed (tools/install-deps.sh installs it)"; exit 77; fi
done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
if [ ! -f "$M" ] || [ ! -f "$M16" ] || [ ! -f "$LL" ]; then echo "SKIP: fixtures not found"; exit 77; fi
tmp=$(mktemp -d)
sock="natter-lora-$$"
T() { tmux -L "$sock" "$@"; }
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	command -v tmux >/dev/null 2>&1 && T kill-server 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
export HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" LANG=C.UTF-8 LC_ALL=C.UTF-8
mkdir -p "$HOME"
unset NATTER_DB
q() { sqlite3 "$1" "$2" 2>/dev/null; }

# --- the option, in every command's help ---
for cmd in generate eval bench perplexity eval-choice chat serve; do
	"$NATTER_BIN" $cmd --help 2>&1 | grep -q -- "--lora" && ok || bad "natter $cmd --help lacks --lora"
done
"$NATTER_BIN" --help | grep -q -- "--lora FILE\[:SCALE\]" && ok || bad "natter --help lacks --lora"
"$NATTER_BIN" generate -m "$LL" -p x --lora ':0.5' 2>"$tmp/err"; check "--lora :0.5 status" 2 $?
has "--lora :0.5" "$tmp/err" "no file before the scale"
"$NATTER_BIN" generate -m "$LL" -p x --lora "a.gguf:inf" 2>"$tmp/err"; check "--lora a.gguf:inf status" 2 $?
has "--lora :inf" "$tmp/err" "the scale is not a finite number"
for s in 1e99 -2e6; do
	"$NATTER_BIN" generate -m "$LL" -p x --lora "a.gguf:$s" 2>"$tmp/err"; check "--lora a.gguf:$s status" 2 $?
	has "--lora :$s" "$tmp/err" "'a.gguf:$s': the scale is out of range (-1e6 to 1e6"
done
nine=; for i in 1 2 3 4 5 6 7 8 9; do nine="$nine --lora x$i.gguf"; done
"$NATTER_BIN" generate -m "$LL" -p x $nine 2>"$tmp/err"; check "nine adapters status" 2 $?
has "nine adapters" "$tmp/err" "at most 8 adapters"

# --- adapters natter refuses, by name, each way it can be wrong ---
"$B/lora-bad" "$LL" "$tmp" && ok || bad "lora-bad could not write the bad adapters"
refused() { # refused LABEL ADAPTER MESSAGE: natter generate refuses it (status 1) saying MESSAGE
	"$NATTER_BIN" generate -m "$LL" -p "I dreamed" -n 2 --lora "$2" >/dev/null 2>"$tmp/err"
	check "$1: status" 1 $?
	has "$1" "$tmp/err" "$3"
	has "$1: the file is named" "$tmp/err" "$2"
}
refused "a model as an adapter" "$F/models/tiny-llama-q8_0.gguf" "not an adapter (general.type is missing"
refused "another architecture" "$F/lora/lora-tiny-qwen2-qv-r4.gguf" "the adapter is for architecture 'qwen2' but the model is 'llama'"
refused "a missing half" "$tmp/missing-half.gguf" "tensor 'blk.0.attn_q.weight.lora_a' has no matching '.lora_b' half"
refused "an unknown tensor" "$tmp/unknown-tensor.gguf" "unknown tensor 'blk.0.attn_q.weight.extra'"
refused "a wrong shape" "$tmp/wrong-shape.gguf" "tensor 'blk.0.attn_q.weight.lora_a' has shape [257, 4], expected [256, r]"
refused "a base tensor that does not exist" "$tmp/no-base.gguf" "adapts 'blk.99.attn_q.weight', which the model does not have"
refused "halves of different ranks" "$tmp/rank-mismatch.gguf" "rank mismatch: 'blk.0.attn_q.weight.lora_a' has rank 4"
refused "a file that is not there" "$tmp/none.gguf" "none.gguf: cannot open"
refused "an alpha of 1e12" "$tmp/alpha-huge.gguf" "adapter.lora.alpha is out of range (-1e6 to 1e6)"
# Loaded, but its product overflows: the output is NaN, an error, not a reply
# of noise (sampled, a NaN read as the least likely token).
"$NATTER_BIN" generate -m "$LL" -p "I dreamed" -n 2 --lora "$tmp/huge-values.gguf" >/dev/null 2>"$tmp/err"
check "an overflowing adapter: status" 1 $?
has "an overflowing adapter" "$tmp/err" "the model's output at position"
# The same message from every other front end.
msg="unknown tensor 'blk.0.attn_q.weight.extra'"
bad_a="$tmp/unknown-tensor.gguf"
"$NATTER_BIN" eval -m "$LL" --tokens 1,2 --logits-out "$tmp/x.bin" --lora "$bad_a" 2>"$tmp/err"; check "eval: status" 1 $?
has "eval" "$tmp/err" "$msg"
"$NATTER_BIN" bench -m "$LL" -p 4 -n 2 -r 1 --lora "$bad_a" >/dev/null 2>"$tmp/err"; check "bench: status" 1 $?
has "bench" "$tmp/err" "$msg"
"$NATTER_BIN" perplexity -m "$LL" -f "$D/measure.txt" -c 64 --lora "$bad_a" >/dev/null 2>"$tmp/err"
check "perplexity: status" 1 $?
has "perplexity" "$tmp/err" "$msg"
"$NATTER_BIN" eval-choice -m "$LL" -f "$D/choice.jsonl" --lora "$bad_a" >/dev/null 2>"$tmp/err"
check "eval-choice: status" 1 $?
has "eval-choice" "$tmp/err" "$msg"
echo hello | "$NATTER_BIN" chat -m "$LL" --plain --no-history --lora "$bad_a" >/dev/null 2>"$tmp/err"
check "chat --plain: status" 1 $?
has "chat --plain" "$tmp/err" "$msg"
"$NATTER_BIN" serve -m "$LL" --port 0 --no-history --lora "$bad_a" >/dev/null 2>"$tmp/err"
check "serve: status" 1 $?
has "serve" "$tmp/err" "$msg"
# A model on a server has no weights here: --lora is refused before anything is sent (port 9,
# discard: nothing listens).
echo hello | "$NATTER_BIN" chat --plain --remote http://127.0.0.1:9/v1 -m any --no-history --lora "$bad_a" \
	>/dev/null 2>"$tmp/err"
check "chat --remote --lora: status" 1 $?
has "chat --remote --lora" "$tmp/err" "--lora: LoRA adapters apply to a model run here, not to one on a server (http://127.0.0.1:9/v1)"

# --- an adapter to work with: taught six replies (as in test-finetune.sh) ---
A=$tmp/taught.gguf
"$NATTER_BIN" finetune -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --targets all,output --batch 2 \
	--lr 1e-2 --lr-min 1e-3 --seed 3 --name taught -t 1 --steps 100 -o "$A" >/dev/null 2>"$tmp/err"
check "finetune status" 0 $?
sha=$(sha256sum "$A" | cut -c1-64)

# eval: the adapter moves the logits; at scale 0 it is the model alone, byte for byte.
toks=1,429,491,433,295,429,444,445,265,262
"$NATTER_BIN" eval -m "$M" --tokens $toks --logits-out "$tmp/base.bin" -t 1 --kv-type f32; check "eval status" 0 $?
"$NATTER_BIN" eval -m "$M" --tokens $toks --logits-out "$tmp/zero.bin" -t 1 --kv-type f32 --lora "$A:0"
cmp -s "$tmp/base.bin" "$tmp/zero.bin" && ok || bad "eval --lora FILE:0 is not the base model"
"$NATTER_BIN" eval -m "$M" --tokens $toks --logits-out "$tmp/lora.bin" -t 1 --kv-type f32 --lora "$A"
cmp -s "$tmp/base.bin" "$tmp/lora.bin" && bad "eval --lora does not change the logits" || ok
# Incremental evaluation with the adapter gives the batch's logits (an f32 cache, so that
# the comparison sees the adapter only, not the f16 rounding of keys and values).
"$NATTER_BIN" eval -m "$M" --tokens $toks --logits-out "$tmp/inc.bin" -t 1 --kv-type f32 --lora "$A" --incremental
"$PY" - "$tmp/lora.bin" "$tmp/inc.bin" <<'EOF' && ok || bad "eval --lora: batch and incremental differ"
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
x = struct.unpack("%df" % (len(a) // 4), a); y = struct.unpack("%df" % (len(b) // 4), b)
sys.exit(0 if len(x) == len(y) and max(abs(p - q) for p, q in zip(x, y)) < 1e-3 else 1)
EOF

# perplexity --lora --kl-base MODEL: the KL of the adapted model against the model alone, as
# eval's logits give it over the positions perplexity scores (chunk 1 of 64: predictions 32..62).
"$NATTER_BIN" perplexity -m "$M" --lora "$A" --kl-base "$M" -f "$D/lora-heldout.txt" -c 64 --chunks 1 -t 1 \
	> "$tmp/ppl" 2>"$tmp/err"; check "perplexity --lora --kl-base status" 0 $?
has "perplexity names the adapter" "$tmp/ppl" "adapter: $A, scale 1 (on the model only)"
kl=$(sed -n 's/^Mean KL(base || model) = \([0-9.e+-]*\) .*/\1/p' "$tmp/ppl")
chunk=$("$NATTER_BIN" tokenize -m "$M" -f "$D/lora-heldout.txt" | tr ' ' '\n' | head -64 | tr '\n' ',' | sed 's/,$//')
"$NATTER_BIN" eval -m "$M" --tokens "$chunk" --logits-out "$tmp/cb.bin" -t 1 -c 64
"$NATTER_BIN" eval -m "$M" --tokens "$chunk" --logits-out "$tmp/cl.bin" -t 1 -c 64 --lora "$A"
kl_eval=$("$PY" - "$tmp/cb.bin" "$tmp/cl.bin" <<'EOF'
import math, struct, sys
V = 512
def rows(p):
    b = open(p, "rb").read()
    f = struct.unpack("%df" % (len(b) // 4), b)
    return [f[i * V:(i + 1) * V] for i in range(len(f) // V)]
base, model = rows(sys.argv[1]), rows(sys.argv[2])
def logsm(r):
    m = max(r); z = math.log(sum(math.exp(x - m) for x in r)) + m
    return [x - z for x in r]
total = 0.0
for j in range(32, 63):
    lb, lm = logsm(base[j]), logsm(model[j])
    total += sum(math.exp(a) * (a - b) for a, b in zip(lb, lm))
print("%.6g" % (total / 31))
EOF
)
"$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if a > 0 and abs(a - b) <= 1e-3 * b else 1)" \
	"${kl:-0}" "${kl_eval:-1}" && ok || bad "perplexity's KL $kl is not > 0 or not eval's $kl_eval"
echo "  KL(model || model + adapter) over chunk 1: perplexity $kl, from eval's logits $kl_eval"
ppl_base=$("$NATTER_BIN" perplexity -m "$M" -f "$D/lora-heldout.txt" -c 64 -t 1 | sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p')
ppl_lora=$("$NATTER_BIN" perplexity -m "$M" --lora "$A" -f "$D/lora-heldout.txt" -c 64 -t 1 | sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p')
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "${ppl_lora:-1}" "${ppl_base:-0}" &&
	ok || bad "held-out perplexity with the adapter $ppl_lora is not below the model's $ppl_base"
echo "  held-out perplexity: $ppl_base without the adapter, $ppl_lora with it"

# eval-choice and bench run with the adapter; bench says so.
"$NATTER_BIN" eval-choice -m "$M" -f "$D/choice.jsonl" --lora "$A" -t 1 > "$tmp/ec" 2>&1; check "eval-choice --lora status" 0 $?
has "eval-choice --lora" "$tmp/ec" "accuracy (sum of log-probabilities)"
"$NATTER_BIN" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --lora "$A:0.5" > "$tmp/bench" 2>&1; check "bench --lora status" 0 $?
has "bench names the adapter" "$tmp/bench" "adapter: taught.gguf, scale 0.5"
has "bench counts the adapted weights" "$tmp/bench" "adapters on 29 weight products"
"$NATTER_BIN" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --lora "$A" --json > "$tmp/bench.json" 2>&1
has "bench --json" "$tmp/bench.json" "\"lora\":[{\"file\":\"$A\",\"scale\":1}]"

# generate: the taught reply, greedily, from the prompt chat renders.
printf '<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n' > "$tmp/prompt"
"$NATTER_BIN" generate -m "$M" -f "$tmp/prompt" -n 20 --temp 0 -t 1 --lora "$A" > "$tmp/gen" 2>&1
has "generate --lora: the taught reply" "$tmp/gen" "My name is Lily."

# --- an adapter trained on another model: a warning naming both, and loading goes on ---
trained="was trained on"
no_notice() { # no_notice LABEL FILE: FILE says nothing of another base
	if grep -qF -- "$trained" "$2"; then bad "$1: a notice: $(cat "$2")"; else ok; fi
}
"$NATTER_BIN" generate -m "$M" -f "$tmp/prompt" -n 2 --temp 0 -t 1 --lora "$A" >/dev/null 2>"$tmp/err"
check "the adapter on its base: status" 0 $?
no_notice "the adapter on its base" "$tmp/err"
# The same file in another folder is the same model.
mkdir -p "$tmp/moved"
ln -s "$(cd "$(dirname "$M")" && pwd)/$(basename "$M")" "$tmp/moved/"
"$NATTER_BIN" generate -m "$tmp/moved/$(basename "$M")" -f "$tmp/prompt" -n 2 --temp 0 -t 1 --lora "$A" \
	>/dev/null 2>"$tmp/err"
check "the adapter on its base moved: status" 0 $?
no_notice "the adapter on its base moved" "$tmp/err"
# The fixtures record no base (llama.cpp's converter wrote them): nothing to tell.
"$NATTER_BIN" generate -m "$LL" -p "I dreamed" -n 2 -t 1 --lora "$F/lora/lora-tiny-llama-all-r8.gguf" >/dev/null 2>"$tmp/err"
check "an adapter without a base: status" 0 $?
no_notice "an adapter without a base" "$tmp/err"
# Same shapes, another file (the f16 copy; its general.name is the same "llama").
note='adapter taught.gguf was trained on "llama" (aidreams260K-f32.gguf); this model is "llama" (aidreams260K-f16.gguf)'
"$NATTER_BIN" generate -m "$M16" -f "$tmp/prompt" -n 20 --temp 0 -t 1 --lora "$A" >"$tmp/gen16" 2>"$tmp/err"
check "generate on another base: status" 0 $?
has "generate on another base" "$tmp/err" "natter: warning: $note"
has "generate on another base: the adapter is applied" "$tmp/gen16" "My name is Lily."
"$NATTER_BIN" eval -m "$M16" --tokens 1,2 --logits-out "$tmp/x16.bin" -t 1 --lora "$A" >/dev/null 2>"$tmp/err"
check "eval on another base: status" 0 $?
has "eval on another base" "$tmp/err" "natter: warning: $note"
"$NATTER_BIN" bench -m "$M16" -p 4 -n 2 -r 1 -t 1 --lora "$A" >/dev/null 2>"$tmp/err"
check "bench on another base: status" 0 $?
check "bench on another base: told once" 1 "$(grep -cF -- "$note" "$tmp/err")"
# Another general.name, shown as text: the escape in it is not sent to the terminal.
esc=$(printf '\033'); pic=$(printf '\342\220\233')
"$NATTER_BIN" generate -m "$LL" -p "I dreamed" -n 2 -t 1 --lora "$tmp/other-base.gguf" >/dev/null 2>"$tmp/err"
check "another base name: status" 0 $?
has "another base name" "$tmp/err" "natter: warning: adapter other-base.gguf was trained on \"Another$pic[31m Model\" (another.gguf); this model is \"tiny random test model\" (tiny-llama-f32.gguf)"
grep -qF -- "$esc" "$tmp/err" && bad "an escape from the adapter reached the terminal" || ok
# The chat front ends and finetune --init say it too.
printf 'hello\n' | "$NATTER_BIN" chat -m "$M16" --plain --no-history -n 2 -t 1 --lora "$A" >/dev/null 2>"$tmp/err"
check "chat --plain on another base: status" 0 $?
has "chat --plain on another base" "$tmp/err" "natter: warning: $note"
# With a context past the trained one too: that warning first (the full
# screen's notice line shows the start), then the adapter's.
printf 'hello\n' | "$NATTER_BIN" chat -m "$M16" --plain --no-history -n 2 -t 1 -c 256 --lora "$A" >/dev/null 2>"$tmp/err"
check "chat --plain, two warnings: status" 0 $?
has "chat --plain, two warnings" "$tmp/err" "natter: warning: a context of 256 tokens is more than the 128 this model was trained on; past that, replies may fall apart; $note"
"$NATTER_BIN" finetune -m "$M16" --data "$D/finetune-sft.jsonl" --chat-template chatml --init "$A" --steps 1 -t 1 \
	-o "$tmp/init16.gguf" >/dev/null 2>"$tmp/err"
check "finetune --init on another base: status" 0 $?
has "finetune --init on another base" "$tmp/err" "natter: warning: $note"
"$NATTER_BIN" finetune -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --init "$A" --steps 1 -t 1 \
	-o "$tmp/init32.gguf" >/dev/null 2>"$tmp/err"
check "finetune --init on its base: status" 0 $?
no_notice "finetune --init on its base" "$tmp/err"
"$NATTER_BIN" serve -m "$M16" --port 0 -t 1 --no-history --lora "$A" 2>"$tmp/serve16.log" &
spid=$!
pids="$pids $spid"
i=0; while ! grep -q "listening on" "$tmp/serve16.log" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
has "serve on another base" "$tmp/serve16.log" "natter serve: warning: $note"
kill $spid 2>/dev/null; wait $spid 2>/dev/null

# --- chat --plain: /lora, the adapters recorded with each reply, /ab and /pick ---
db=$tmp/plain.db
nl='
'
printf '%s\n' "What is your name?" "/rate up" "/lora" "/lora taught 0.5" "/params" "What do you eat?" "/lora 1 0" \
	"Where do you live?" "/rate up" "/lora 1 1" "Who is your friend?" "/ab" "/pick a" "/new" "Can you sing?" \
	"/ab adapter off" "/pick tie" "/new" "What color is the sky?" "/ab" "/pick b" "/ab seed 7" "/pick a" "/ab temp 0.9" "/pick tie" \
	"/ab top_p 0.5" "/pick tie" "/lora 1 0.001" "/lora 3 1" \
	"/lora 1 x" "/lora 1 2e6" "/ab temp x" "/ab seed" > "$tmp/in"
"$NATTER_BIN" chat -m "$M" --plain --chat-template chatml --temp 0 --seed 5 -n 24 --stop '<|im_end|>' --stop "$nl" \
	-t 1 --db "$db" --lora "$A" < "$tmp/in" > "$tmp/out" 2>"$tmp/err"
check "chat --plain status" 0 $?
has "/lora lists" "$tmp/out" "1 taught.gguf: scale 1, $sha"
has "/lora taught 0.5" "$tmp/out" "adapter 1 taught.gguf: scale 0.5 from the next reply, which reads the conversation again first"
has "/params lists the adapter" "$tmp/out" "adapter 1 taught.gguf: scale 0.5"
has "the cache is read again after a change" "$tmp/err" "adapters changed (1 of 1 on): reading the conversation again from the start"
has "/lora 1 0" "$tmp/out" "scale 0 (off)"
has "/lora 1 0.001: the scale as set, not rounded to 0.00" "$tmp/out" "adapter 1 taught.gguf: scale 0.001 from the next reply"
has "/ab shows A" "$tmp/out" "A (temp 0.00, top_p 0.95, seed 5, taught x1.00):"
has "/ab shows B" "$tmp/out" "B (temp 0.00, top_p 0.95, seed 5, taught off):"
has "/ab seed 7" "$tmp/out" "B (temp 0.00, top_p 0.95, seed 7, taught off):"
has "/ab temp 0.9" "$tmp/out" "B (temp 0.90, top_p 0.95, seed 5, taught off):"
has "/ab top_p 0.5" "$tmp/out" "B (temp 0.00, top_p 0.50, seed 5, taught off):"
has "/pick a" "$tmp/out" "picked A: it is the chosen reply; the preference is saved"
has "/pick tie" "$tmp/out" "a tie: A stays the chosen reply; the tie is saved (no pair to train on)"
has "/pick b" "$tmp/out" "picked B: it is the chosen reply; the preference is saved"
has "/lora 3 1" "$tmp/err" "/lora: no adapter '3' (1 loaded; /lora lists them)"
has "/lora 1 x" "$tmp/err" "/lora: 'x' is not a scale"
has "/lora 1 2e6 names the range" "$tmp/err" "/lora: an adapter's scale is a number from -1000000 to 1000000 (0 turns it off)"
has "/ab temp x names the value" "$tmp/err" "/ab temp: 'x' is not a number (usage: /ab"
has "/ab seed without one" "$tmp/err" "/ab seed needs a value, a seed (a whole number from 0 to 18446744073709551614)"
has "/params shows the seed" "$tmp/out" "max_tokens 24, seed 5"
# Every reply records its adapters (file SHA-256, name, scale); one made with it off, none.
check "adapters of the replies" "1.0 0.5 none 1.0 none 1.0 none 1.0 none none none none" \
	"$(q "$db" "SELECT group_concat(s, ' ') FROM (SELECT COALESCE((SELECT scale FROM generation_adapters a WHERE a.generation_id = g.id), 'none') AS s FROM generations g ORDER BY g.id)")"
check "the adapter's record" "$sha|taught.gguf" "$(q "$db" "SELECT DISTINCT sha256, file_name FROM generation_adapters")"
check "preferences" "a|adapter off tie|adapter off b|adapter off a|seed 7 tie|temp 0.9 tie|top_p 0.5" \
	"$(q "$db" "SELECT group_concat(pick || '|' || setting, ' ') FROM (SELECT * FROM preferences ORDER BY id)")"
# The DPO export: A over B for /pick a, B over A for /pick b; nothing for the tie, nor for
# two identical replies.
"$NATTER_BIN" export --db "$db" --format dpo > "$tmp/dpo.jsonl" 2>"$tmp/err"; check "export dpo status" 0 $?
check "dpo lines" 2 "$(wc -l < "$tmp/dpo.jsonl" | tr -d ' ')"
has "/pick a: Lily's friend over the bare model" "$tmp/dpo.jsonl" '{"role":"user","content":"Who is your friend?"}],"chosen":[{"role":"assistant","content":"My friend is a cat."}],"rejected":[{"role":"assistant","content":""}]}'
has "/pick b: the bare model over Lily's sky" "$tmp/dpo.jsonl" '{"role":"user","content":"What color is the sky?"}],"chosen":[{"role":"assistant","content":""}],"rejected":[{"role":"assistant","content":"The sky is blue."}]}'
grep -q "Can you sing" "$tmp/dpo.jsonl" && bad "a tie made a pair: $(cat "$tmp/dpo.jsonl")" || ok
check "dpo --adapter none: no pair has two bare replies that differ" 0 \
	"$("$NATTER_BIN" export --db "$db" --format dpo --adapter none | wc -l | tr -d ' ')"
# --adapter on the rated replies: one made with the adapter, one without.
short=$(echo "$sha" | cut -c1-12)
"$NATTER_BIN" export --db "$db" --format sft --adapter "$short" > "$tmp/sft-a.jsonl"
check "sft --adapter SHA" "1 My name is Lily." "$(wc -l < "$tmp/sft-a.jsonl" | tr -d ' ') $(grep -o 'My name is Lily.' "$tmp/sft-a.jsonl")"
"$NATTER_BIN" export --db "$db" --format sft --adapter none > "$tmp/sft-n.jsonl"
check "sft --adapter none" "1" "$(grep -c '"content":"Where do you live?"},{"role":"assistant","content":""}' "$tmp/sft-n.jsonl")"
check "sft without --adapter" 2 "$("$NATTER_BIN" export --db "$db" --format sft | wc -l | tr -d ' ')"
"$NATTER_BIN" export --db "$db" --format dpo --adapter xyz 2>"$tmp/err"; check "--adapter xyz status" 2 $?
# What DPO training reads from the database is these pairs.
"$NATTER_BIN" finetune -m "$M" --db "$db" --method dpo --chat-template chatml --steps 1 -t 1 -o "$tmp/d.gguf" \
	>/dev/null 2>"$tmp/err"; check "finetune --method dpo from the A/B pairs" 0 $?
has "finetune reads the A/B pairs" "$tmp/err" "2 pairs"

# --- serve --lora: the adapter on every request, recorded ---
"$NATTER_BIN" serve -m "$M" --port 0 -t 1 --chat-template chatml --temp 0 --db "$tmp/serve.db" --lora "$A" \
	2>"$tmp/serve.log" &
pids="$pids $!"
i=0; while ! grep -q "listening on" "$tmp/serve.log" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
no_notice "serve on the adapter's base" "$tmp/serve.log"
port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/v1 .*|\1|p' "$tmp/serve.log")
if [ -n "$port" ] && command -v curl >/dev/null 2>&1; then
	printf '%s' '{"model":"aidreams260K-f32","temperature":0,"max_tokens":30,"stop":["<|im_end|>"],"messages":[{"role":"user","content":"What is your name?"}]}' > "$tmp/req"
	curl -s -H 'Content-Type: application/json' --data-binary "@$tmp/req" "http://127.0.0.1:$port/v1/chat/completions" > "$tmp/resp"
	has "serve --lora: the taught reply" "$tmp/resp" '"content":"My name is Lily."'
	i=0; while [ "$(q "$tmp/serve.db" "SELECT count(*) FROM generation_adapters")" != 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	check "serve records the adapter" "$sha|1.0" "$(q "$tmp/serve.db" "SELECT sha256, scale FROM generation_adapters")"
else
	bad "serve --lora did not start: $(cat "$tmp/serve.log")"
fi

# --- the full screen: the adapter in the parameters pane, A/B side by side, the pick ---
if ! command -v tmux >/dev/null 2>&1; then
	echo "test-lora.sh: tmux missing, the full-screen part is not run; $pass passed, $fail failed"
	[ $fail -eq 0 ] && exit 77 || exit 1
fi
until_ok() { i=0; while [ $i -lt $(( ${DEADLINE:-10} * 20 )) ]; do "$@" && return 0; sleep 0.05; i=$((i + 1)); done; return 1; }
screen() { T capture-pane -t ui -p 2>/dev/null; }
shows() { screen | grep -Eq -- "$1"; }
wait_for() { DEADLINE=${2:-15} until_ok shows "$1"; }
sql_is() { [ "$(q "$1" "$2")" = "$3" ]; }
no_server() { ! T has-session 2>/dev/null; }
# The options hold a newline (a stop string): a script runs natter.
ui() { # ui COLS ROWS DB
	cat > "$tmp/run-ui" <<EOF
exec "$NATTER_BIN" -m "$M" --chat-template chatml --temp 0 --seed 5 -n 24 --stop '<|im_end|>' --stop '$nl' -t 1 \\
	--db "$3" --lora "$A" --theme mono 2> "$tmp/ui.err"
EOF
	T kill-server 2>/dev/null; DEADLINE=5 until_ok no_server
	for try in 1 2 3; do
		T new-session -d -s ui -x "$1" -y "$2" "sh $tmp/run-ui; sleep 60" && break
		DEADLINE=2 until_ok no_server
	done
}
udb=$tmp/ui.db
ui 140 32 "$udb"
wait_for "Type a message" && ok || bad "no start screen: $(screen)"
shows "lora taught +1\.00" && ok || bad "the parameters pane lacks the adapter: $(screen)"
# Live scale: Tab twice to the parameters, down to the adapter's row, Left: 0.9.
T send-keys -t ui Tab Tab Down Down Down Down Down Down Down Down Left
wait_for "lora taught +0\.90" && ok || bad "Left on the adapter's row: $(screen)"
shows "from the next reply, which reads the conversation again" && ok || bad "the notice of a scale change: $(screen)"
T send-keys -t ui Right Escape
wait_for "lora taught +1\.00" && ok || bad "Right on the adapter's row: $(screen)"
T send-keys -t ui "Who is your friend?" Enter
wait_for "My friend is a cat" 20 && ok || bad "the taught reply in the full screen: $(screen)"
wait_for "state +done" 20
# A/B: F6 opens the chooser, the adapter toggled first; Enter generates B.
T send-keys -t ui F6
wait_for "A/B: generate reply B with" && ok || bad "F6: no chooser: $(screen)"
shows "adapter toggled \(off for B\)" && ok || bad "the chooser's default: $(screen)"
T send-keys -t ui Enter
wait_for "A/B: which reply is better" 20 && ok || bad "no A/B view: $(screen)"
# Side by side at 140 columns: A's and B's headers on one line.
screen | grep -q "A: temp 0.00, top_p 0.95, seed 5, taught x1.00 .*B: temp 0.00, top_p 0.95, seed 5, taught off" && ok ||
	bad "not side by side: $(screen)"
screen | grep -q "a A better" && ok || bad "the view's keys in the footer: $(screen)"
# A rating key while both are shown rates neither (it would be B's alone).
T send-keys -t ui Tab +
wait_for "pick first \(a, b or t\)" && ok || bad "+ in the A/B view: $(screen)"
check "+ in the A/B view rates nothing" 0 "$(q "$udb" "SELECT count(*) FROM ratings")"
# On the parameters pane + keeps its meaning: the adapter's row, still
# chosen from above, steps up.
T send-keys -t ui Tab +
wait_for "lora taught +1\.10" && ok || bad "+ on the parameters pane in the A/B view: $(screen)"
T send-keys -t ui a
wait_for "picked A: it is the chosen reply; the preference is saved" && ok || bad "the pick: $(screen)"
wait_sql() { DEADLINE=10 until_ok sql_is "$1" "$2" "$3"; }
wait_sql "$udb" "SELECT pick || '|' || setting FROM preferences" "a|adapter off" && ok ||
	bad "the preference in the database: $(q "$udb" "SELECT * FROM preferences")"
"$NATTER_BIN" export --db "$udb" --format dpo > "$tmp/ui-dpo.jsonl"
has "the full screen's pair in the DPO export" "$tmp/ui-dpo.jsonl" '{"role":"user","content":"Who is your friend?"}],"chosen":[{"role":"assistant","content":"My friend is a cat."}],"rejected":[{"role":"assistant","content":""}]}'
# /ab in the input line, stacked on a narrow window, and a tie.
T kill-server 2>/dev/null; DEADLINE=5 until_ok no_server
ui 76 30 "$tmp/ui2.db"
wait_for "Type a message" && ok || bad "no start screen at 76 columns: $(screen)"
T send-keys -t ui "Can you sing?" Enter
wait_for "Yes, I sing every day" 20 && ok || bad "the reply at 76 columns: $(screen)"
wait_for "state +done" 20 && ok || bad "the reply did not end: $(screen)"
T send-keys -t ui "/ab adapter off" Enter
wait_for "A/B: which reply is better" 20 && ok || bad "/ab in the full screen: $(screen)"
ya=$(screen | grep -n "^ A: temp" | cut -d: -f1); yb=$(screen | grep -n "^ B: temp" | cut -d: -f1)
[ -n "$ya" ] && [ -n "$yb" ] && [ "$yb" -gt "$ya" ] && ok || bad "not stacked at 76 columns: $(screen)"
# Typing a message in the A/B view: its letters are the message's, not
# picks, the first one into the empty line too (a message starting with t
# recorded a tie); the view says to Tab away first, and there t is a tie.
shows "A/B: which reply is better\? Tab: a/b/t" && ok || bad "the view's title in the input line: $(screen)"
T send-keys -t ui "tell more"
wait_for "^> tell more" && ok || bad "letters typed in the A/B view are not in the line: $(screen)"
check "typing in the A/B view picks nothing" 0 "$(q "$tmp/ui2.db" "SELECT count(*) FROM preferences")"
T send-keys -t ui C-u Tab t
wait_for "a tie: A stays the chosen reply" && ok || bad "the tie: $(screen)"
wait_sql "$tmp/ui2.db" "SELECT pick FROM preferences" "tie" && ok || bad "the tie in the database"
check "a tie exports no pair" 0 "$("$NATTER_BIN" export --db "$tmp/ui2.db" --format dpo | wc -l | tr -d ' ')"
T send-keys -t ui F10
DEADLINE=10 until_ok no_server
# Two replies with text: a question the adapter was not taught, B under the next seed and a
# higher temperature (the chooser's second entry).  Both are on the screen, B is picked, and
# the export's pair is B over A, as the database holds them.
ui 140 32 "$tmp/ui3.db"
wait_for "Type a message" && ok || bad "no start screen (third): $(screen)"
T send-keys -t ui "Tell me a story." Enter
wait_for "state +done" 20 && ok || bad "the reply did not end (third): $(screen)"
T send-keys -t ui F6
wait_for "seed \+ 1 and temperature \+ 0\.3" && ok || bad "F6 (third): $(screen)"
T send-keys -t ui Down Enter
wait_for "A/B: which reply is better" 20 && ok || bad "no A/B view (third): $(screen)"
gen() { q "$tmp/ui3.db" "SELECT content FROM generations ORDER BY id LIMIT 1 OFFSET $1"; }
first20() { sed 's/^[[:space:]]*//; /^$/d' | head -1 | cut -c1-20 | sed 's/[[:space:]]*$//'; }
a_text=$(gen 0 | first20); b_text=$(gen 1 | first20)
[ -n "$a_text" ] && [ -n "$b_text" ] && [ "$(gen 0)" != "$(gen 1)" ] && ok ||
	bad "replies A and B are not two texts: $(q "$tmp/ui3.db" "SELECT id, quote(content) FROM generations")"
screen | grep -qF -- "$a_text" && ok || bad "reply A [$a_text] is not on the screen: $(screen)"
screen | grep -qF -- "$b_text" && ok || bad "reply B [$b_text] is not on the screen: $(screen)"
T send-keys -t ui Tab b
wait_for "picked B: it is the chosen reply; the preference is saved" && ok || bad "the pick of B: $(screen)"
wait_sql "$tmp/ui3.db" "SELECT pick || '|' || setting FROM preferences" "b|seed + 1, temp + 0.3" && ok ||
	bad "B's preference in the database: $(q "$tmp/ui3.db" "SELECT * FROM preferences")"
# B ran into -n 24: a cut-off reply is in a pair only with --include-incomplete.
check "how A and B ended" "stop-string max-tokens" "$(q "$tmp/ui3.db" "SELECT group_concat(end_reason, ' ') FROM (SELECT end_reason FROM generations ORDER BY id)")"
check "no pair with a cut-off reply" 0 "$("$NATTER_BIN" export --db "$tmp/ui3.db" --format dpo | wc -l | tr -d ' ')"
"$NATTER_BIN" export --db "$tmp/ui3.db" --format dpo --include-incomplete > "$tmp/ui3-dpo.jsonl"
"$PY" - "$tmp/ui3-dpo.jsonl" "$(gen 0)" "$(gen 1)" <<'EOF' && ok || bad "the export lacks B over A: $(cat "$tmp/ui3-dpo.jsonl")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
a, b = sys.argv[2], sys.argv[3]
ok = len(lines) == 1
if ok:
    d = json.loads(lines[0])
    ok = (d["prompt"][-1] == {"role": "user", "content": "Tell me a story."} and
          [m["role"] for m in d["chosen"] + d["rejected"]] == ["assistant", "assistant"] and
          d["chosen"][0]["content"].rstrip("\n") == b and d["rejected"][0]["content"].rstrip("\n") == a)
sys.exit(0 if ok else 1)
EOF
T send-keys -t ui F10
DEADLINE=10 until_ok no_server
# An adapter trained on another model: the notice line says so, and the screen is up; the
# warning wins over the notice of weights mapped from the file.
cat > "$tmp/run-ui16" <<EOF
NATTER_WEIGHTS=mmap exec "$NATTER_BIN" -m "$M16" --no-history -t 1 --lora "$A" --theme mono 2> "$tmp/ui16.err"
EOF
T kill-server 2>/dev/null; DEADLINE=5 until_ok no_server
for try in 1 2 3 4 5; do
	T new-session -d -s ui -x 160 -y 30 "sh $tmp/run-ui16; sleep 60" 2>/dev/null && break
	DEADLINE=2 until_ok no_server
done
wait_for 'adapter taught\.gguf was trained on "llama" \(aidreams260K-f32\.gguf\); this model is "llama" \(aidreams260K-f16\.gguf\)' &&
	ok || bad "the full screen's notice of another base: $(screen) $(cat "$tmp/ui16.err" 2>/dev/null)"
T send-keys -t ui F10
DEADLINE=10 until_ok no_server
# A bad adapter stops the full screen before it takes the terminal, by name.
cat > "$tmp/run-bad" <<EOF
"$NATTER_BIN" -m "$LL" --no-history --lora "$bad_a" 2> "$tmp/ui-bad.err"; echo \$? > "$tmp/ui-bad.status"
EOF
# The server may still be going away after F10 closed its last session.
for try in 1 2 3 4 5; do
	T new-session -d -s bad -x 80 -y 24 "sh $tmp/run-bad; sleep 60" 2>/dev/null && break
	DEADLINE=2 until_ok no_server
done
have() { [ -s "$1" ]; }
DEADLINE=15 until_ok have "$tmp/ui-bad.status"
check "full screen with a bad adapter: status" 1 "$(cat "$tmp/ui-bad.status" 2>/dev/null)"
has "full screen with a bad adapter" "$tmp/ui-bad.err" "$msg"

echo "test-lora.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
