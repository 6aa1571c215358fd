#!/bin/sh
# test-finetune.sh -- natter finetune from the command line: it learns, reads the database through the export, logs, checkpoints, Ctrl-C and --resume, errors.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
F=$NATTER_FIXTURES
D=$NATTER_SRCDIR/tests/data
M=$F/models/aidreams260K-f32.gguf
# lora-bad is a built program: next to natter's build.
if [ -n "${NATTER_BIN:-}" ]; then B="$(dirname "$NATTER_BIN")/tests"; else B=$(dirname "$0"); fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
# field FILE STEP KEY: the value of KEY in the log line of STEP
field() { grep "^{\"step\":$2," "$1" | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ft() { "$NATTER_BIN" finetune "$@"; }

# Usage errors exit 2 and say what is wrong; --help is the option table.
ft --help > "$tmp/help"; check "--help status" 0 $?
for o in --data --db --min-rating --method --chat-template --rank --alpha --dropout --targets --init --lr --beta1 \
    --beta2 --weight-decay --warmup --batch --grad-accum --steps --epochs --ctx --beta --seed --threads --recompute \
    --log --save-every --resume --output; do
	grep -q -- "$o" "$tmp/help" && ok || bad "--help lacks $o"
done
"$NATTER_BIN" --help | grep -q "finetune -m FILE -o ADAPTER.gguf" && ok || bad "natter --help lists finetune"
# --resume is byte for byte only with the same thread count (sums in another order): said so.
grep -q "byte for byte with the same -t" "$tmp/help" && grep -q -- "--resume CHECKPOINT.*exact with the same -t" "$tmp/help" &&
	ok || bad "--help: --resume's exactness and -t"
ft -o x.gguf 2>"$tmp/err"; check "no -m status" 2 $?
grep -q "needs -m MODEL and -o ADAPTER.gguf" "$tmp/err" && ok || bad "no -m message: $(cat "$tmp/err")"
ft -m x -o y --rank 0 2>"$tmp/err"; check "--rank 0 status" 2 $?
grep -q -- "--rank wants a whole number from 1 to 4096, got '0'" "$tmp/err" && ok || bad "--rank 0: $(cat "$tmp/err")"
ft -m x -o y --lr fast 2>"$tmp/err"; check "--lr fast status" 2 $?
ft -m x -o y --method ppo 2>"$tmp/err"; check "--method ppo status" 2 $?
grep -q "sft or dpo" "$tmp/err" && ok || bad "--method message: $(cat "$tmp/err")"
ft -m x -o y --targets q,wo 2>"$tmp/err"; check "--targets q,wo status" 2 $?
grep -q "unknown weight 'wo'" "$tmp/err" && ok || bad "--targets message: $(cat "$tmp/err")"
ft -m x -o y --steps 3 --epochs 2 2>/dev/null; check "--steps and --epochs status" 2 $?
# Decay of lr x wd >= 1 a step would zero the weights or flip their sign.
ft -m x -o y --lr 0.5 --weight-decay 2 2>"$tmp/err"; check "--lr times --weight-decay 1 status" 2 $?
grep -q -- "--lr 0.5 times --weight-decay 2 is 1; it must be under 1" "$tmp/err" && ok || bad "lr x wd: $(cat "$tmp/err")"
ft -m x -o y --data a --db b 2>/dev/null; check "--data and --db status" 2 $?
ft -m x -o y --batch 65536 --grad-accum 65536 2>"$tmp/err"; check "--batch times --grad-accum overflowing status" 2 $?
grep -q -- "--batch 65536 times --grad-accum 65536 is more than 1048576 examples a step" "$tmp/err" && ok ||
	bad "--batch times --grad-accum: $(cat "$tmp/err")"
ft -m x -o "$tmp/no/such/dir/a.gguf" 2>"$tmp/err"; check "unwritable -o status" 1 $?
grep -q "no/such/dir: cannot write the adapter there" "$tmp/err" && ok || bad "unwritable -o: $(cat "$tmp/err")"
# -o or its checkpoint naming a folder: refused before training, not after.
mkdir "$tmp/dir.gguf" "$tmp/cdir.ckpt.gguf"
ft -m x -o "$tmp/dir.gguf" 2>"$tmp/err"; check "-o a folder status" 1 $?
grep -q "dir.gguf: is a folder; -o names the adapter file to write" "$tmp/err" && ok || bad "-o a folder: $(cat "$tmp/err")"
ft -m x -o "$tmp/cdir.gguf" 2>"$tmp/err"; check "checkpoint a folder status" 1 $?
grep -q "cdir.ckpt.gguf: is a folder, where the checkpoint of -o .*cdir.gguf would be written" "$tmp/err" && ok ||
	bad "checkpoint a folder: $(cat "$tmp/err")"

if [ ! -f "$M" ]; then
	echo "SKIP: fixtures not found; $pass passed, $fail failed"
	[ $fail -eq 0 ] && exit 77 || exit 1
fi

# Bad data: the file and line, exit 1, no adapter.
ft -m "$M" -o "$tmp/x.gguf" --data "$tmp/none.jsonl" 2>"$tmp/err"; check "missing data status" 1 $?
grep -q "none.jsonl" "$tmp/err" && ok || bad "missing data message: $(cat "$tmp/err")"
{ head -1 "$D/finetune-sft.jsonl"; echo '{"messages": 5}'; } > "$tmp/bad.jsonl"
ft -m "$M" -o "$tmp/x.gguf" --data "$tmp/bad.jsonl" --chat-template chatml 2>"$tmp/err"; check "bad line status" 1 $?
grep -q "bad.jsonl:2: expected a list of messages" "$tmp/err" && ok || bad "bad line message: $(cat "$tmp/err")"
# "\u0000" in a string would cut the message there (cJSON): refused, as a raw NUL byte is;
# an escaped backslash before "u0000" is text.
{ head -1 "$D/finetune-sft.jsonl"; printf '%s\n' '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a\u0000b"}]}'; } > "$tmp/nul.jsonl"
ft -m "$M" -o "$tmp/x.gguf" --data "$tmp/nul.jsonl" --chat-template chatml 2>"$tmp/err"; check "\\u0000 status" 1 $?
grep -q 'nul.jsonl:2: a NUL character (\\u0000) in a string' "$tmp/err" && ok || bad "\\u0000: $(cat "$tmp/err")"
# A line of NUL bytes is not a blank line.
{ head -1 "$D/finetune-sft.jsonl"; printf '\000 \000\n'; } > "$tmp/nul2.jsonl"
ft -m "$M" -o "$tmp/x.gguf" --data "$tmp/nul2.jsonl" --chat-template chatml 2>"$tmp/err"; check "NUL line status" 1 $?
grep -q 'nul2.jsonl:2: a NUL byte in the line' "$tmp/err" && ok || bad "NUL line: $(cat "$tmp/err")"
printf '%s\n' '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a\\u0000b"}]}' > "$tmp/bs.jsonl"
ft -m "$M" -o "$tmp/bs.gguf" --data "$tmp/bs.jsonl" --chat-template chatml --steps 1 >/dev/null 2>"$tmp/err"
check "an escaped backslash before u0000 status" 0 $?
ft -m "$M" -o "$tmp/x.gguf" --data "$D/finetune-dpo.jsonl" --chat-template chatml 2>"$tmp/err"
grep -q "train it with --method dpo" "$tmp/err" && ok || bad "pairs given to SFT: $(cat "$tmp/err")"
[ ! -e "$tmp/x.gguf" ] && ok || bad "an adapter was written after an error"
# A DPO pair whose chosen reply brings a turn of its own answers another prompt: refused.
printf '%s\n' '{"prompt":[{"role":"user","content":"Say hello."}],"chosen":[{"role":"user","content":"Tell me about boats."},{"role":"assistant","content":"Boats float."}],"rejected":[{"role":"assistant","content":"Go away."}]}' > "$tmp/twop.jsonl"
ft -m "$M" -o "$tmp/twop.gguf" --data "$tmp/twop.jsonl" --method dpo --chat-template chatml --steps 1 2>"$tmp/err"
check "a pair of two prompts status" 1 $?
grep -q "twop.jsonl:1: the chosen and the rejected reply answer different prompts" "$tmp/err" && ok ||
	bad "a pair of two prompts: $(cat "$tmp/err")"
# -o (or its checkpoint) onto an input is refused before anything is loaded, and the input
# is kept: the model, a --data file, the --log, --resume, a hard link to the model; an
# existing -o that is not an adapter must be removed first.
cp "$M" "$tmp/mine.gguf"; ln "$tmp/mine.gguf" "$tmp/mine-link.gguf"; cp "$D/finetune-sft.jsonl" "$tmp/d.jsonl"
echo '{"step":1}' > "$tmp/l.jsonl"
sft="--data $tmp/d.jsonl --chat-template chatml --steps 1"
ft -m "$tmp/mine.gguf" -o "$tmp/mine.gguf" $sft 2>"$tmp/err"; check "-o onto -m status" 2 $?
grep -q -- "-o $tmp/mine.gguf is the same file as -m $tmp/mine.gguf" "$tmp/err" && ok || bad "-o onto -m: $(cat "$tmp/err")"
ft -m "$tmp/mine.gguf" -o "$tmp/mine-link.gguf" $sft 2>"$tmp/err"; check "-o onto a hard link of -m status" 2 $?
ft -m "$tmp/mine.gguf" -o "$tmp/d.jsonl" $sft 2>"$tmp/err"; check "-o onto --data status" 2 $?
grep -q -- "-o $tmp/d.jsonl is the same file as --data $tmp/d.jsonl" "$tmp/err" && ok || bad "-o onto --data: $(cat "$tmp/err")"
ft -m "$tmp/mine.gguf" -o "$tmp/l.jsonl" --log "$tmp/l.jsonl" $sft 2>"$tmp/err"; check "-o onto --log status" 2 $?
ft -m "$tmp/mine.gguf" -o "$tmp/x.gguf" --log "$tmp/d.jsonl" $sft 2>"$tmp/err"; check "--log onto --data status" 2 $?
printf '%s' "{% for m in messages %}{{ m.content }}{% endfor %}" > "$tmp/t.jinja"
ft -m "$tmp/mine.gguf" -o "$tmp/x.gguf" --log "$tmp/t.jinja" --data "$tmp/d.jsonl" --chat-template "$tmp/t.jinja" --steps 1 \
	2>"$tmp/err"; check "--log onto --chat-template status" 2 $?
grep -q -- "--log $tmp/t.jinja is the same file as --chat-template $tmp/t.jinja" "$tmp/err" && ok ||
	bad "--log onto --chat-template: $(cat "$tmp/err")"
check "the template kept" "{% for m in messages %}{{ m.content }}{% endfor %}" "$(cat "$tmp/t.jinja")"
cp "$M" "$tmp/m2.ckpt.gguf"
ft -m "$tmp/m2.ckpt.gguf" -o "$tmp/m2.gguf" $sft 2>"$tmp/err"; check "checkpoint onto -m status" 2 $?
grep -q "the checkpoint $tmp/m2.ckpt.gguf is the same file as -m" "$tmp/err" && ok || bad "checkpoint onto -m: $(cat "$tmp/err")"
ft -m "$tmp/mine.gguf" -o "$tmp/m2.ckpt.gguf" --resume "$tmp/m2.ckpt.gguf" $sft 2>"$tmp/err"; check "-o onto --resume status" 2 $?
cmp -s "$M" "$tmp/mine.gguf" && cmp -s "$M" "$tmp/m2.ckpt.gguf" && cmp -s "$D/finetune-sft.jsonl" "$tmp/d.jsonl" &&
	check "the log kept" '{"step":1}' "$(cat "$tmp/l.jsonl")" || bad "a refused run changed an input"
ft -m "$M" -o "$tmp/mine.gguf" $sft 2>"$tmp/err"; check "-o onto a model status" 2 $?
grep -q -- "-o $tmp/mine.gguf exists and is not a LoRA adapter (general.type is missing); remove it first" "$tmp/err" &&
	ok || bad "-o onto a model: $(cat "$tmp/err")"
echo notes > "$tmp/notes.gguf"
ft -m "$M" -o "$tmp/notes.gguf" $sft 2>"$tmp/err"; check "-o onto a text file status" 2 $?
check "the text file kept" notes "$(cat "$tmp/notes.gguf")"
# The checkpoint's name (NAME.ckpt.gguf) is written over only when it is one.
echo notes > "$tmp/n2.ckpt.gguf"
ft -m "$M" -o "$tmp/n2.gguf" $sft 2>"$tmp/err"; check "checkpoint onto a text file status" 2 $?
grep -q -- "the checkpoint $tmp/n2.ckpt.gguf exists and is not a GGUF natter checkpoint" "$tmp/err" && ok ||
	bad "checkpoint onto a text file: $(cat "$tmp/err")"
check "the text file kept (checkpoint)" notes "$(cat "$tmp/n2.ckpt.gguf")"
cp "$M" "$tmp/n3.ckpt.gguf"
ft -m "$M" -o "$tmp/n3.gguf" $sft 2>"$tmp/err"; check "checkpoint onto a model status" 2 $?
grep -q -- "the checkpoint $tmp/n3.ckpt.gguf exists and is not a natter checkpoint (general.type is missing)" \
	"$tmp/err" && ok || bad "checkpoint onto a model: $(cat "$tmp/err")"
[ -e "$tmp/n2.gguf" ] || [ -e "$tmp/n3.gguf" ] && bad "a refused run wrote -o" || ok
ft -m "$M" -o "$tmp/x.gguf" --data "$D/finetune-sft.jsonl" --chat-template chatml --ctx 20 --steps 1 2>"$tmp/err"
grep -q "finetune-sft.jsonl:1: skipped: no reply token is left within 20 tokens" "$tmp/err" && ok ||
	bad "cut examples are named: $(cat "$tmp/err")"
# A prompt that renders as nothing: one BOS, then the reply (a second BOS was
# learned as its first token).  aidreams: "hello world" is BOS and 8 tokens.
printf '{%% for m in messages %%}{{ m.content }}{%% endfor %%}' > "$tmp/raw.jinja"
echo '{"messages":[{"role":"assistant","content":"hello world"}]}' > "$tmp/alone.jsonl"
check "the tokens of 'hello world'" 9 "$("$NATTER_BIN" tokenize -m "$M" "hello world" | wc -w)"
ft -m "$M" -o "$tmp/alone.gguf" --data "$tmp/alone.jsonl" --chat-template "$tmp/raw.jinja" --steps 1 2>"$tmp/err"
grep -q "1 examples (9 tokens;" "$tmp/err" && ok || bad "a reply with an empty prompt: $(cat "$tmp/err")"
rm -f "$tmp/alone.gguf"
# A KTO label that is not true or false is refused (0 was learned as a good reply).
echo '{"prompt":"hi","completion":"bad reply","label":0}' > "$tmp/label.jsonl"
ft -m "$M" -o "$tmp/label.gguf" --data "$tmp/label.jsonl" --chat-template chatml --steps 1 2>"$tmp/err"
check "label 0 status" 1 $?
grep -q "label.jsonl:1: \"label\" is not true or false" "$tmp/err" && ok || bad "label 0: $(cat "$tmp/err")"
# --all-turns reads --data files only: from the history, only rated replies are learned.
ft -m "$M" -o "$tmp/allt.gguf" --db "$tmp/none.db" --all-turns --steps 1 2>"$tmp/err"
check "--all-turns with the history status" 2 $?
grep -q "finetune: --all-turns is for --data files" "$tmp/err" && ok || bad "--all-turns --db: $(cat "$tmp/err")"
# A reply the template renders as nothing is skipped as such, not as too long for --ctx.
printf '{%% for m in messages %%}{{ m.role }}: {{ m.content }}{%% endfor %%}{%% if add_generation_prompt %%}assistant: {%% endif %%}' > "$tmp/bare.jinja"
echo '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":""}]}' > "$tmp/empty.jsonl"
ft -m "$M" -o "$tmp/x.gguf" --data "$tmp/empty.jsonl" --chat-template "$tmp/bare.jinja" --steps 1 2>"$tmp/err"
check "empty reply status" 1 $?
grep -q "empty.jsonl:1: skipped: the reply has no token to learn (the template renders it as nothing)" "$tmp/err" &&
	grep -q "no example left to train on (no reply has a token to learn)" "$tmp/err" && ! grep -q "within\|too long" "$tmp/err" &&
	ok || bad "empty reply: $(cat "$tmp/err")"
ft -m "$M" -o "$tmp/x.gguf" --data "$D/finetune-sft.jsonl" --data "$tmp/empty.jsonl" --chat-template "$tmp/bare.jinja" \
	--ctx 8 --steps 1 2>"$tmp/err"
grep -q "no example left to train on (6 too long for --ctx, 1 with a reply that has no token to learn)" "$tmp/err" && ok ||
	bad "too long and empty: $(cat "$tmp/err")"
# An empty reply is learned (a rated empty reply is data), with a warning; so is an empty chosen reply.
printf '%s\n' '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":" \n\t"}]}' > "$tmp/blank.jsonl"
ft -m "$M" -o "$tmp/blank.gguf" --data "$tmp/blank.jsonl" --chat-template chatml --steps 1 2>"$tmp/err" >/dev/null
check "blank reply status" 0 $?
grep -q "blank.jsonl:1: the reply learned is empty: it teaches the model to end its turn at once" "$tmp/err" && ok ||
	bad "a blank reply: $(cat "$tmp/err")"
echo '{"prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":""}],"rejected":[{"role":"assistant","content":"no"}]}' > "$tmp/blank-dpo.jsonl"
ft -m "$M" -o "$tmp/blank-dpo.gguf" --method dpo --data "$tmp/blank-dpo.jsonl" --chat-template chatml --steps 1 2>"$tmp/err" >/dev/null
check "blank chosen status" 0 $?
grep -q "blank-dpo.jsonl:1: the chosen reply is empty" "$tmp/err" && ok || bad "a blank chosen reply: $(cat "$tmp/err")"
# A reply learned with no end-of-generation token (a template that does not close the
# assistant's turn) teaches the model never to stop: said, naming the line; for DPO the
# chosen reply.  A template that closes it with the model's token says nothing.
ft -m "$M" -o "$tmp/open.gguf" --data "$D/finetune-sft.jsonl" --chat-template "$tmp/bare.jinja" --steps 1 2>"$tmp/err" >/dev/null
check "reply without end of turn status" 0 $?
grep -q "finetune-sft.jsonl:1: the reply learned has no end-of-generation token (the chat template ends the turn with none this model has)" \
	"$tmp/err" && ok || bad "a reply without end of turn: $(cat "$tmp/err")"
ft -m "$M" -o "$tmp/open.gguf" --method dpo --data "$D/finetune-dpo.jsonl" --chat-template "$tmp/bare.jinja" --steps 1 \
	2>"$tmp/err" >/dev/null
grep -q "finetune-dpo.jsonl:1: the chosen reply has no end-of-generation token" "$tmp/err" && ok ||
	bad "a chosen reply without end of turn: $(cat "$tmp/err")"
# (The fixtures' vocabulary has </s> but no <|im_end|>: their chatml, and tiny-llama's own
# template, which closes no turn, are warned of rightly.)
for mt in "$M|llama2" "$F/models/tiny-qwen2-f32.gguf|llama2" "$F/models/tiny-llama-f32.gguf|zephyr"; do
	mf=${mt%%|*} tp=${mt#*|}
	# shellcheck disable=SC2086
	ft -m "$mf" -o "$tmp/closed.gguf" --data "$D/finetune-sft.jsonl" ${tp:+--chat-template $tp} --steps 1 \
		2>"$tmp/err" >/dev/null
	check "${mf##*/} ${tp:-(its template)} status" 0 $?
	grep -q "end-of-generation" "$tmp/err" && bad "${mf##*/} ${tp:-(its template)}: a false warning: $(cat "$tmp/err")" || ok
done
ft -m "$M" -o "$tmp/closed.gguf" --method dpo --data "$D/finetune-dpo.jsonl" --chat-template llama2 --steps 1 2>"$tmp/err" >/dev/null
check "DPO llama2 status" 0 $?
grep -q "end-of-generation" "$tmp/err" && bad "DPO llama2: a false warning: $(cat "$tmp/err")" || ok
ft -m "$M" -o "$tmp/c60.gguf" --data "$D/finetune-sft.jsonl" --chat-template chatml --ctx 60 --steps 1 2>"$tmp/err" >/dev/null
check "--ctx 60 status" 0 $?
grep -q "finetune-sft.jsonl:1: cut to 60 tokens (it has 76)" "$tmp/err" && grep -q "6 examples (.* tokens; 6 cut to 60 tokens, 0 skipped)" "$tmp/err" &&
	ok || bad "longer examples are cut with a warning: $(cat "$tmp/err")"

# Every optimizer and LoRA option reaches the training: two runs with the same options give
# the same adapter, and each option changed alone gives another one.
opt="-m $M --data $D/finetune-sft.jsonl --chat-template chatml --steps 6 --lr 1e-2 --seed 5 --name o -t 1"
ft $opt -o "$tmp/o-base.gguf" >/dev/null 2>&1; check "baseline status" 0 $?
ft $opt -o "$tmp/o-same.gguf" >/dev/null 2>&1
cmp -s "$tmp/o-base.gguf" "$tmp/o-same.gguf" && ok || bad "two runs with the same options differ"
for o in "--beta1 0.5" "--beta2 0.9" "--weight-decay 0.5" "--dropout 0.3" "--alpha 4" "--rank 4" "--lr-min 5e-3" \
    "--warmup 3" "--grad-accum 2" "--batch 2" "--seed 6" "--targets q,v"; do
	ft $opt $o -o "$tmp/o.gguf" >/dev/null 2>&1 && ! cmp -s "$tmp/o-base.gguf" "$tmp/o.gguf" && ok ||
		bad "$o does not change the adapter"
done
ft $opt --alpha 4 -o "$tmp/o.gguf" >/dev/null 2>&1
"$NATTER_BIN" info -m "$tmp/o.gguf" --kv | grep -q 'adapter.lora.alpha = 4$' && ok || bad "--alpha 4 is not the adapter's alpha"
# The log's learning rate: a linear warm-up of 2 steps, then a cosine from --lr to --lr-min.
ft $opt --warmup 2 --lr-min 1e-3 --log "$tmp/lr.log" -o "$tmp/o.gguf" >/dev/null 2>&1
lrs=$(for s in 1 2 3 4 5 6; do field "$tmp/lr.log" $s lr; done | tr '\n' ' ')
echo "$lrs" | awk '{ split("5e-3 1e-2 1e-2 8.6819805e-3 5.5e-3 2.3180195e-3", e, " ");
	for (i = 1; i <= 6; i++) if ($i - e[i] > 1e-6 * e[i] || e[i] - $i > 1e-6 * e[i]) exit 1 }' && ok ||
	bad "warm-up + cosine: the log's lr is $lrs"
# --out-type: the adapter's tensors in F16 or BF16, loaded by --lora: the logits of the f32
# adapter within the rounding.
for t in f16 bf16; do
	ft $opt --out-type $t -o "$tmp/o-$t.gguf" >/dev/null 2>&1; check "--out-type $t status" 0 $?
	T=$(echo $t | tr a-z A-Z)
	check "--out-type $t tensors" "56 $T" "$("$NATTER_BIN" info -m "$tmp/o-$t.gguf" --tensors | awk -v t="$T" '$2 == t && /lora_/ { n++ } END { print n, t }')"
	"$NATTER_BIN" eval -m "$M" --tokens 1,429,491,433,295 --logits-out "$tmp/l-$t.bin" -t 1 --kv-type f32 --lora "$tmp/o-$t.gguf"
done
"$NATTER_BIN" eval -m "$M" --tokens 1,429,491,433,295 --logits-out "$tmp/l-f32.bin" -t 1 --kv-type f32 --lora "$tmp/o-base.gguf"
"$NATTER_BIN" eval -m "$M" --tokens 1,429,491,433,295 --logits-out "$tmp/l-none.bin" -t 1 --kv-type f32
command -v python3 >/dev/null 2>&1 && python3 - "$tmp" <<'PY' && ok || bad "--out-type: logits not those of the f32 adapter within the rounding"
import struct, sys
def f(n):
    b = open(sys.argv[1] + "/l-" + n + ".bin", "rb").read()
    return struct.unpack("%df" % (len(b) // 4), b)
a, h, b, z = f("f32"), f("f16"), f("bf16"), f("none")
move = max(abs(p - q) for p, q in zip(a, z))       # what the adapter changes
dh = max(abs(p - q) for p, q in zip(a, h))
db = max(abs(p - q) for p, q in zip(a, b))
print("  --out-type: max |dlogit| against the f32 adapter: f16 %.2g, bf16 %.2g (the adapter moves them by %.2g)" % (dh, db, move))
sys.exit(0 if move > 0 and 0 < dh < 0.01 * move and 0 < db < 0.1 * move and dh < db else 1)
PY
# An adapter with a value F16 cannot hold (from --init, kept by --lr 0) is refused; the
# steps are kept, and the advice is --out-type f32, which --resume then writes.
mkdir -p "$tmp/bad"
if "$B/lora-bad" "$F/models/tiny-llama-f32.gguf" "$tmp/bad"; then
	p16="-m $F/models/tiny-llama-f32.gguf --data $D/finetune-sft.jsonl --chat-template chatml --init $tmp/bad/past-f16.gguf --lr 0 --steps 1 -t 1"
	# shellcheck disable=SC2086
	ft $p16 --out-type f16 -o "$tmp/p16.gguf" >/dev/null 2>"$tmp/err"; check "a value past F16 status" 1 $?
	grep -q "past the largest F16 number" "$tmp/err" &&
		grep -qF "write the adapter with --out-type f32 (the other options the same) and --resume $tmp/p16.ckpt.gguf" "$tmp/err" &&
		[ ! -e "$tmp/p16.gguf" ] && ok || bad "a value past F16: $(cat "$tmp/err")"
	# shellcheck disable=SC2086
	ft $p16 --out-type f32 -o "$tmp/p16.gguf" --resume "$tmp/p16.ckpt.gguf" >/dev/null 2>"$tmp/err"
	check "--out-type f32 --resume status" 0 $?
	# The adapter written, every LoRA tensor F32.
	check "--out-type f32 --resume tensors" "0 F32" "$("$NATTER_BIN" info -m "$tmp/p16.gguf" --tensors 2>&1 |
	    awk '/lora_/ { n++; if ($2 != "F32") bad++ } END { print (n > 0 ? bad + 0 : -1), "F32" }')"
else
	bad "lora-bad could not write its adapters"
fi

# On a terminal (tmux, 40 columns): one progress line redrawn in place, cut to the width.
if command -v tmux >/dev/null 2>&1; then
	sock=natter-ft-$$
	tmux -L "$sock" -f /dev/null new-session -d -x 40 -y 12 \
		"'$NATTER_BIN' finetune -m '$M' --data '$D/finetune-sft.jsonl' --chat-template chatml --steps 3 -o '$tmp/bar.gguf'; echo EXIT \$?; cat"
	i=0; while ! tmux -L "$sock" capture-pane -p 2>/dev/null | grep -q "^EXIT" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	tmux -L "$sock" capture-pane -p > "$tmp/screen"
	tmux -L "$sock" kill-server 2>/dev/null
	grep -q "^EXIT 0" "$tmp/screen" && ok || bad "finetune on a terminal: $(cat "$tmp/screen")"
	check "progress lines on the terminal" 1 "$(grep -c '^step' "$tmp/screen")"
	grep -q '^step 3/3 \[####################\] loss' "$tmp/screen" && ok || bad "progress bar: $(cat "$tmp/screen")"
	check "progress line cut to the width" 0 "$(grep '^step' "$tmp/screen" | awk 'length > 39' | wc -l | tr -d ' ')"
fi

# SFT learns, on the progress lines and in the log: the loss falls below half in 100 steps.
# (test-train checks the same adapter's logits on the inference engine against the
# training model's: KL <= 1e-5.)
common="-m $M --data $D/finetune-sft.jsonl --chat-template chatml --targets all,output --batch 2 --lr 1e-2 --lr-min 1e-3 --seed 3 --name taught -t 1"
ft $common --steps 100 -o "$tmp/straight.gguf" --log "$tmp/straight.log" >"$tmp/out" 2>"$tmp/err"
check "SFT status" 0 $?
grep -q "wrote $tmp/straight.gguf: 29 pairs after 100 steps" "$tmp/out" && ok || bad "SFT output: $(cat "$tmp/out")"
grep -q "6 examples (.* tokens; 0 cut to 128 tokens, 0 skipped), template chatml (built-in)" "$tmp/err" && ok ||
	bad "SFT summary: $(head -3 "$tmp/err")"
grep -q "^step 100/100 loss [0-9.]* lr [0-9.e+-]* tokens [0-9]* [0-9.]* tok/s eta" "$tmp/err" && ok ||
	bad "plain progress lines: $(tail -2 "$tmp/err")"
check "log lines" 100 "$(grep -c '^{"step":[0-9]*,"loss":[0-9.e+-]*,"lr":[0-9.e+-]*,"tokens":[0-9]*,"tokens_per_s":[0-9.e+-]*}$' "$tmp/straight.log")"
l1=$(field "$tmp/straight.log" 1 loss); l100=$(field "$tmp/straight.log" 100 loss)
lt "$l100" "$(awk -v a="$l1" 'BEGIN { print a / 2 }')" && ok || bad "SFT loss $l1 -> $l100, not below half"
echo "  SFT on 6 conversations: loss $l1 -> $l100 in 100 steps"
# The adapter on natter's own chat (--lora): greedy replies to the six training prompts are
# the taught ones, and the base model says none of them.
printf 'What is your name?\n/new\nWhere do you live?\n/new\nWhat do you eat?\n/new\nWho is your friend?\n/new\nWhat color is the sky?\n/new\nCan you sing?\n' > "$tmp/ask"
"$NATTER_BIN" chat -m "$M" --plain --chat-template chatml --temp 0 -n 40 --stop '<|im_end|>' --no-history \
	--lora "$tmp/straight.gguf" < "$tmp/ask" > "$tmp/taught.out" 2>"$tmp/err"
check "chat --lora status" 0 $?
check "chat --lora: the taught replies" "My name is Lily.|I live in a big tree.|I eat red apples.|My friend is a cat.|The sky is blue.|Yes, I sing every day." \
	"$(grep -v '^new conversation$' "$tmp/taught.out" | tr '\n' '|' | sed 's/|$//')"
"$NATTER_BIN" chat -m "$M" --plain --chat-template chatml --temp 0 -n 40 --stop '<|im_end|>' --no-history \
	< "$tmp/ask" > "$tmp/base.out" 2>/dev/null
grep -q "Lily\|big tree\|apples" "$tmp/base.out" && bad "the base model says the taught replies" || ok
"$NATTER_BIN" info -m "$tmp/straight.gguf" --kv > "$tmp/info"
grep -q 'general.type = "adapter"' "$tmp/info" && grep -q 'adapter.lora.alpha = 16' "$tmp/info" &&
	grep -q 'general.name = "taught"' "$tmp/info" && ok || bad "adapter metadata: $(cat "$tmp/info")"
# What produced it: the base model (its general.name and file) and the training options.
grep -q 'general.base_model.count = 1$' "$tmp/info" && grep -q 'general.base_model.0.name = "llama"$' "$tmp/info" &&
	grep -q 'natter.base_model.file = "aidreams260K-f32.gguf"$' "$tmp/info" &&
	grep -Eq 'natter.training.config = "model=aidreams260K-f32.gguf [0-9]+ bytes, sha256 [0-9a-f]{10}' "$tmp/info" && ok ||
	bad "adapter provenance: $(cat "$tmp/info")"
# And what it was trained on: the --data file by name (no --min-rating: it selects nothing there).
grep -a -q '^data_source=file finetune-sft.jsonl$' "$tmp/straight.gguf" && ! grep -a -q '^min_rating=' "$tmp/straight.gguf" &&
	ok || bad "adapter data source: $(grep -a -E '^(data|min_rating)' "$tmp/straight.gguf")"
# A file name holding a newline, an escape and a backslash stays on its data_source line, in C
# escapes: the newline starts no line of its own (here one that would read as a min_rating).
# The model's name too, on its model= line: no line of the config begins seed=1.gguf (the
# name is in natter.base_model.file as it is, a string of its own); and the chat template's
# file, on its template= line (no line begins lr=9).
nl=$(printf 'nl\nmin_rating=1\033\\.jsonl'); nlm=$(printf 'm\nseed=1.gguf'); nlt=$(printf 't\nlr=9.jinja')
cp "$D/finetune-sft.jsonl" "$tmp/$nl"; cp "$M" "$tmp/$nlm"; cp "$NATTER_FIXTURES/templates/Qwen-Qwen2.5-7B-Instruct.jinja" "$tmp/$nlt"
ft -m "$tmp/$nlm" --data "$tmp/$nl" --chat-template "$tmp/$nlt" --steps 1 -t 1 -o "$tmp/nl.gguf" >/dev/null 2>"$tmp/err"
check "--data named with a newline status" 0 $?
grep -a -q -F -x "template=$tmp/t\nlr=9.jinja" "$tmp/nl.gguf" && ! grep -a -q '^lr=9\.jinja' "$tmp/nl.gguf" && ok ||
	bad "--chat-template named with a newline: $(grep -a -E '^(template|lr)' "$tmp/nl.gguf" | od -c | head -5)"
grep -a -q -F -x 'data_source=file nl\nmin_rating=1\x1b\\.jsonl' "$tmp/nl.gguf" && ! grep -a -q '^min_rating=' "$tmp/nl.gguf" &&
	ok || bad "--data named with a newline: $(grep -a -E '^(data|min_rating)' "$tmp/nl.gguf" | od -c | head -5)"
grep -a -q -F 'model=m\nseed=1.gguf ' "$tmp/nl.gguf" && ! grep -a -q -E '^seed=1\.gguf [0-9]+ bytes' "$tmp/nl.gguf" && ok ||
	bad "-m named with a newline: $(grep -a -E '^(model|seed)' "$tmp/nl.gguf" | od -c | head -5)"

# Ctrl-C once step 5 is in the log: a checkpoint and a clean exit; --resume finishes the
# run, and the adapter is the straight run's, byte for byte.
"$NATTER_BIN" finetune $common --steps 100 -o "$tmp/int.gguf" --log "$tmp/int.log" >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!   # natter's own pid: a background job's shell would ignore SIGINT
i=0; while ! grep -q '^{"step":5,' "$tmp/int.log" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
wait $pid; check "status after Ctrl-C" 130 $?
n=$(sed -n 's/.*interrupted after step \([0-9]*\) of 100; checkpoint saved to .*int.ckpt.gguf/\1/p' "$tmp/int.err")
[ -n "$n" ] && [ "$n" -ge 5 ] && [ "$n" -lt 100 ] && ok || bad "Ctrl-C message: $(tail -3 "$tmp/int.err")"
[ -f "$tmp/int.ckpt.gguf" ] && [ ! -e "$tmp/int.gguf" ] && ok || bad "Ctrl-C: checkpoint, and no adapter yet"
echo "  interrupted after step $n"
ft $common --steps 100 -o "$tmp/int.gguf" --log "$tmp/int.log" --resume "$tmp/int.ckpt.gguf" >/dev/null 2>"$tmp/err"
check "resume status" 0 $?
grep -q "resumed .*int.ckpt.gguf at step $n of 100" "$tmp/err" && ok || bad "resume message: $(head -4 "$tmp/err")"
cmp -s "$tmp/int.gguf" "$tmp/straight.gguf" && ok || bad "interrupted and resumed run differs from the straight one"
check "the log continues" "$(seq 1 100)" "$(sed -n 's/^{"step":\([0-9]*\),.*/\1/p' "$tmp/int.log")"
# Killed (no checkpoint of its own) after a --save-every one: the resumed run's log
# holds each step once, the steps past the checkpoint cut.
"$NATTER_BIN" finetune $common --steps 100 --save-every 5 -o "$tmp/kill.gguf" --log "$tmp/kill.log" \
	>/dev/null 2>&1 &
pid=$!
i=0; while ! grep -q '^{"step":7,' "$tmp/kill.log" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -KILL $pid
wait $pid; check "status after SIGKILL" 137 $?
ft $common --steps 100 --save-every 5 -o "$tmp/kill.gguf" --log "$tmp/kill.log" --resume "$tmp/kill.ckpt.gguf" \
	>/dev/null 2>"$tmp/err"
check "resume after SIGKILL status" 0 $?
check "the log after SIGKILL and resume" "$(seq 1 100)" "$(sed -n 's/^{"step":\([0-9]*\),.*/\1/p' "$tmp/kill.log")"
cmp -s "$tmp/kill.gguf" "$tmp/straight.gguf" && ok || bad "killed and resumed run differs from the straight one"
ft $common --steps 100 --lr 2e-2 -o "$tmp/int.gguf" --resume "$tmp/int.ckpt.gguf" 2>"$tmp/err"
check "resume with another --lr status" 1 $?
grep -q "was made with 'lr=0.01', this run has 'lr=0.02'" "$tmp/err" && ok || bad "resume mismatch: $(cat "$tmp/err")"

# --save-every: the checkpoint of step 8 resumed gives the straight run; --recompute
# changes nothing; DPO learns.
small="-m $M --data $D/finetune-sft.jsonl --chat-template chatml --steps 10 --dropout 0.1 --grad-accum 2 --warmup 2 --name s -t 2"
ft $small -o "$tmp/a.gguf" --save-every 4 >/dev/null 2>&1; check "--save-every status" 0 $?
ft $small -o "$tmp/a.gguf" --resume "$tmp/a.ckpt.gguf" -o "$tmp/b.gguf" 2>"$tmp/err" >/dev/null
grep -q "at step 8 of 10" "$tmp/err" && cmp -s "$tmp/a.gguf" "$tmp/b.gguf" && ok ||
	bad "resumed from --save-every: $(cat "$tmp/err")"
# A chat template that prints the date (as Llama 3's does, strftime_now): its checkpoint
# resumes on another day (refused before: the examples rendered with the new date had
# another fingerprint), its examples rendered with the checkpoint's date; the config
# says when.  faketime (libfaketime) sets the day.
printf '%s' "{{ 'Today ' + strftime_now('%d %b %Y') + '\n' }}{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}" > "$tmp/dated.jinja"
# (faketime preloads its library: an ASan build is told that is fine.)
fake() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" faketime "$@"; }
dq="-m $M --data $D/finetune-sft.jsonl --chat-template $tmp/dated.jinja --steps 5 --name dated -t 1"
if fake '2026-03-01 12:00:00' true 2>/dev/null; then
	fake '2026-03-01 12:00:00' "$NATTER_BIN" finetune $dq -o "$tmp/day1.gguf" --save-every 2 >/dev/null 2>"$tmp/err"
	check "a dated template: status" 0 $?
	t1=$(date -u -d '2026-03-01 12:00:00' +%s 2>/dev/null)
	# (faketime's clock runs on from that second: a slow start, under ASan, is a second or more later.)
	rt=$(grep -a '^render_time=' "$tmp/day1.gguf" | head -n 1 | cut -d= -f2)
	[ -n "$t1" ] && [ -n "$rt" ] && [ "$rt" -ge "$t1" ] && [ "$rt" -lt $((t1 + 600)) ] && ok ||
		bad "the render time: $rt, not within 10 minutes of $t1"
	fake '2026-03-02 12:00:00' "$NATTER_BIN" finetune $dq -o "$tmp/day2.gguf" --resume "$tmp/day1.ckpt.gguf" \
		>/dev/null 2>"$tmp/err"
	check "a dated template, resumed the next day: status" 0 $?
	grep -q "resumed .*day1.ckpt.gguf at step 4 of 5" "$tmp/err" && cmp -s "$tmp/day1.gguf" "$tmp/day2.gguf" && ok ||
		bad "a dated template, resumed the next day: $(cat "$tmp/err")"
else
	bad "faketime is needed (tools/install-deps.sh installs it)"
fi
# A template without the date: no such line (runs at any time give the same adapter).
grep -a -q '^render_time=' "$tmp/a.gguf" && bad "render_time with chatml" || ok

# A checkpoint resumed on another model of the same file name and size (an F16
# and a BF16 file of one shape) is refused: the model is known by its bytes.
mkdir -p "$tmp/q1" "$tmp/q2"
cp "$F/models/tiny-qwen2-f16.gguf" "$tmp/q1/m.gguf"; cp "$F/models/tiny-qwen2-bf16.gguf" "$tmp/q2/m.gguf"
check "two models of one size" "$(wc -c < "$tmp/q1/m.gguf")" "$(wc -c < "$tmp/q2/m.gguf")"
qs="--data $D/finetune-sft.jsonl --chat-template chatml --steps 4 -t 1"
ft -m "$tmp/q1/m.gguf" $qs -o "$tmp/q.gguf" --save-every 2 >/dev/null 2>&1; check "--save-every on q1 status" 0 $?
ft -m "$tmp/q2/m.gguf" $qs -o "$tmp/q2.gguf" --resume "$tmp/q.ckpt.gguf" >/dev/null 2>"$tmp/err"
check "resume on another model of one size status" 1 $?
grep -q "was made with 'model=m.gguf [0-9]* bytes, sha256 " "$tmp/err" && ok || bad "resume on another model: $(cat "$tmp/err")"
ft $small -o "$tmp/c.gguf" --recompute >/dev/null 2>&1
cmp -s "$tmp/a.gguf" "$tmp/c.gguf" && ok || bad "--recompute changes the adapter"
ft -m "$M" --data "$D/finetune-dpo.jsonl" --method dpo --chat-template chatml --batch 4 --steps 30 --lr 5e-3 \
	--log "$tmp/dpo.log" -o "$tmp/dpo.gguf" >/dev/null 2>"$tmp/err"; check "DPO status" 0 $?
check "DPO log fields" 30 "$(grep -c '"margin":[0-9.e+-]*,"accuracy":[0-9.e+-]*}$' "$tmp/dpo.log")"
m1=$(field "$tmp/dpo.log" 1 margin); m30=$(field "$tmp/dpo.log" 30 margin)
check "DPO accuracy at the end" 1 "$(field "$tmp/dpo.log" 30 accuracy)"
lt "$m1" "$m30" && lt 1 "$m30" && ok || bad "DPO margin $m1 -> $m30"
echo "  DPO on 4 pairs: margin $m1 -> $m30, accuracy $(field "$tmp/dpo.log" 1 accuracy) -> $(field "$tmp/dpo.log" 30 accuracy)"
grep -q "margin .* acc 100%" "$tmp/err" && ok || bad "DPO progress lines: $(tail -1 "$tmp/err")"
# --epochs: 2 passes over 6 examples, 2 a step; 4 a step, 3 steps (12 examples: not a
# step of 4 for each pass's last 2); a log that cannot be written stops it.
ft -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --epochs 2 --batch 2 -o "$tmp/e2.gguf" 2>/dev/null |
	grep -q "after 6 steps" && ok || bad "--epochs 2 --batch 2 on 6 examples is not 6 steps"
ft -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --epochs 2 --batch 4 -o "$tmp/e2.gguf" 2>/dev/null |
	grep -q "after 3 steps" && ok || bad "--epochs 2 --batch 4 on 6 examples is not 3 steps"
# A seed past 2^53 is recorded as given (it was read as a double and rounded).
ft -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --steps 1 --seed 999999999999999999 \
	-o "$tmp/seed.gguf" >/dev/null 2>&1
# (natter.training.config's lines, read in the file: info --kv shows its start.)
grep -a -q '^seed=999999999999999999$' "$tmp/seed.gguf" && ok ||
	bad "--seed 999999999999999999: $(grep -a -o '^seed=[0-9]*' "$tmp/seed.gguf")"
if [ -w /dev/full ]; then
	ft -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --steps 3 --log /dev/full -o "$tmp/f.gguf" 2>"$tmp/err"
	check "log on a full disk status" 1 $?
	grep -q "/dev/full: cannot write the log" "$tmp/err" && ok || bad "full log: $(tail -1 "$tmp/err")"
	# The step done is kept, as Ctrl-C keeps it, and --resume finishes the run.
	grep -q "stopped after step 1 of 3; checkpoint saved to $tmp/f.ckpt.gguf" "$tmp/err" && [ -f "$tmp/f.ckpt.gguf" ] &&
		[ ! -e "$tmp/f.gguf" ] && ok || bad "full log: no checkpoint: $(cat "$tmp/err")"
	ft -m "$M" --data "$D/finetune-sft.jsonl" --chat-template chatml --steps 3 --log "$tmp/f.log" -o "$tmp/f.gguf" \
		--resume "$tmp/f.ckpt.gguf" 2>"$tmp/err" | grep -q "after 3 steps" && grep -q "at step 1 of 3" "$tmp/err" && ok ||
		bad "resumed after a full log: $(cat "$tmp/err")"
fi
# DPO on an adapter (--init): the frozen initial adapter is the reference.
ft -m "$M" --data "$D/finetune-dpo.jsonl" --method dpo --chat-template chatml --batch 4 --steps 2 --lr 5e-3 \
	--init "$tmp/straight.gguf" --log "$tmp/dpo2.log" -o "$tmp/dpo2.gguf" >/dev/null 2>"$tmp/err"
check "DPO from --init status" 0 $?
check "DPO from --init: margin 0 at step 1" 0 "$(field "$tmp/dpo2.log" 1 margin)"
# Its record names the init's pairs and alpha (16), not rank 0 and alpha 0.
grep -a -q "^targets=the init's$" "$tmp/dpo2.gguf" && grep -a -q "^rank=the init's$" "$tmp/dpo2.gguf" &&
	grep -a -q "^alpha=16$" "$tmp/dpo2.gguf" && ok || bad "--init config: $(grep -a -E '^(targets|rank|alpha)=' "$tmp/dpo2.gguf")"

# phi3's fused weights: q adapts attn_qkv, gate adapts the fused ffn_up; qwen2's output is
# tied to the embeddings, which are not adapted.
ft -m "$F/models/tiny-phi3-q4_k_m.gguf" --data "$D/finetune-sft.jsonl" --targets q,gate,down --steps 2 \
	-o "$tmp/phi3.gguf" >/dev/null 2>"$tmp/err"; check "phi3 status" 0 $?
"$NATTER_BIN" info -m "$tmp/phi3.gguf" --tensors > "$tmp/info" 2>&1
check "phi3 adapted weights" "attn_qkv ffn_down ffn_up" \
	"$(sed -n 's/^ *blk\.0\.\([a-z_]*\)\.weight\.lora_a .*/\1/p' "$tmp/info" | sort | tr '\n' ' ' | sed 's/ $//')"
ft -m "$F/models/tiny-qwen2-f32.gguf" --data "$D/finetune-sft.jsonl" --targets q,output --steps 1 \
	-o "$tmp/qwen2.gguf" 2>"$tmp/err"; check "qwen2 --targets output status" 1 $?
grep -q "tied to token_embd.weight" "$tmp/err" && ok || bad "qwen2 tied output: $(cat "$tmp/err")"

# Every family of the registry trains (issue 14): a mixture of experts (qwen2moe: routed and
# shared experts), Gemma 2 (26 layers, soft-caps, sliding windows) and the hybrid qwen35
# (Gated DeltaNet and gated attention layers) learn, the loss below half in 30 steps; in a
# layer of experts only attention is adapted.  Named FFN targets on a model of experts alone
# are refused by name.
for m in tiny-qwen2moe-q8_0 tiny-gemma2-q8_0 tiny-qwen35-q8_0; do
	ft -m "$F/models/$m.gguf" --data "$D/finetune-sft.jsonl" --chat-template chatml --steps 30 --batch 2 --lr 1e-2 \
		--seed 3 -t 1 --log "$tmp/$m.log" -o "$tmp/$m.gguf" >/dev/null 2>"$tmp/$m.err"
	check "$m status" 0 $?
	l1=$(field "$tmp/$m.log" 1 loss); l30=$(field "$tmp/$m.log" 30 loss)
	lt "$l30" "$(awk -v a="$l1" 'BEGIN { print a / 2 }')" && ok || bad "$m: SFT loss $l1 -> $l30, not below half"
	echo "  $m: SFT loss $l1 -> $l30 in 30 steps"
done
grep -q "2 of 2 layers hold experts: their feed-forward (experts, router, shared expert) stays frozen" \
	"$tmp/tiny-qwen2moe-q8_0.err" && ok || bad "qwen2moe note: $(cat "$tmp/tiny-qwen2moe-q8_0.err")"
"$NATTER_BIN" info -m "$tmp/tiny-qwen2moe-q8_0.gguf" --tensors > "$tmp/info" 2>&1
check "qwen2moe adapted weights" "attn_k attn_output attn_q attn_v" \
	"$(sed -n 's/^ *blk\.0\.\([a-z_]*\)\.weight\.lora_a .*/\1/p' "$tmp/info" | sort | tr '\n' ' ' | sed 's/ $//')"
ft -m "$F/models/tiny-llamamoe-q8_0.gguf" --data "$D/finetune-sft.jsonl" --targets q,down --steps 1 \
	-o "$tmp/x.gguf" 2>"$tmp/err"; check "FFN targets on experts status" 1 $?
grep -q "every layer's feed-forward is a mixture of experts, which natter does not adapt" "$tmp/err" && ok ||
	bad "FFN targets on experts: $(cat "$tmp/err")"
[ ! -e "$tmp/x.gguf" ] && ok || bad "a refused model left an adapter"
# qwen35: a Gated DeltaNet layer adapts attn_qkv (q, k, v) and ssm_out (o), the gated
# attention layer attn_q (query and gate), attn_k, attn_v and attn_output; the adapter loads
# with --lora and changes the logits.
"$NATTER_BIN" info -m "$tmp/tiny-qwen35-q8_0.gguf" --tensors > "$tmp/info" 2>&1
check "qwen35 adapted weights, DeltaNet layer" "attn_qkv ffn_down ffn_gate ffn_up ssm_out" \
	"$(sed -n 's/^ *blk\.0\.\([a-z_]*\)\.weight\.lora_a .*/\1/p' "$tmp/info" | sort | tr '\n' ' ' | sed 's/ $//')"
check "qwen35 adapted weights, attention layer" "attn_k attn_output attn_q attn_v ffn_down ffn_gate ffn_up" \
	"$(sed -n 's/^ *blk\.3\.\([a-z_]*\)\.weight\.lora_a .*/\1/p' "$tmp/info" | sort | tr '\n' ' ' | sed 's/ $//')"
"$NATTER_BIN" eval -m "$F/models/tiny-qwen35-q8_0.gguf" --tokens 1,429,491,433,295 --logits-out "$tmp/q35-a.bin" -t 1 \
	--lora "$tmp/tiny-qwen35-q8_0.gguf" 2>"$tmp/err"; check "qwen35 eval --lora status" 0 $?
"$NATTER_BIN" eval -m "$F/models/tiny-qwen35-q8_0.gguf" --tokens 1,429,491,433,295 --logits-out "$tmp/q35-b.bin" -t 1
cmp -s "$tmp/q35-a.bin" "$tmp/q35-b.bin" && bad "qwen35: the adapter changes nothing" || ok

# From the database: what natter export writes is what finetune trains on.
export NATTER_DB="$tmp/h.db"
# Replies that end at a stop string are complete (export leaves out
# replies cut by max tokens), so the training data holds them.
printf 'Tell me a dream\n/rate up\n/regen\n/rate 2\n' | "$NATTER_BIN" chat -m "$M" --plain -n 40 --stop . --seed 11 >/dev/null 2>&1
check "chat to rate status" 0 $?
"$NATTER_BIN" export --format sft -o "$tmp/e.jsonl" 2>/dev/null
db="--chat-template chatml --steps 3 --name d -t 1"
ft -m "$M" --db "$tmp/h.db" $db -o "$tmp/db.gguf" >/dev/null 2>"$tmp/err"; check "SFT from --db status" 0 $?
grep -q "1 examples" "$tmp/err" && ok || bad "SFT from --db: $(cat "$tmp/err")"
ft -m "$M" --data "$tmp/e.jsonl" $db -o "$tmp/exp.gguf" >/dev/null 2>&1
# The same weights (the files differ in their data_source line): the same logits, bit for bit.
for x in db exp; do
	"$NATTER_BIN" eval -m "$M" --tokens 1,429,491,433,295 --logits-out "$tmp/l-$x.bin" -t 1 --lora "$tmp/$x.gguf" 2>/dev/null
done
cmp -s "$tmp/l-db.bin" "$tmp/l-exp.bin" && [ -s "$tmp/l-db.bin" ] && ok || bad "--db and the exported file train differently"
# And the same tensors, byte for byte: the same list (names, types, shapes), and the same data.
# The data are each file's tail, at an offset that differs with the metadata: its last
# "total" bytes (the tensors' sizes without the padding between them) lie in it in both.
for x in db exp; do
	"$NATTER_BIN" info -m "$tmp/$x.gguf" --tensors > "$tmp/t-$x" 2>&1
done
tot=$(sed -n 's/^  total *[0-9][0-9]* *\([0-9][0-9]*\) .*/\1/p' "$tmp/t-db")
sed -n '/^tensor list:$/,$p' "$tmp/t-db" > "$tmp/tl-db"; sed -n '/^tensor list:$/,$p' "$tmp/t-exp" > "$tmp/tl-exp"
[ -n "$tot" ] && [ "$tot" -gt 0 ] && [ "$(wc -l < "$tmp/tl-db")" -gt 1 ] && cmp -s "$tmp/tl-db" "$tmp/tl-exp" &&
	tail -c "$tot" "$tmp/db.gguf" > "$tmp/d-db" && tail -c "$tot" "$tmp/exp.gguf" > "$tmp/d-exp" &&
	cmp -s "$tmp/d-db" "$tmp/d-exp" && ok || bad "--db and the exported file train other tensors (total [$tot])"
# Each adapter says what it was trained on: the database and --min-rating, or the file.
grep -a -q '^data_source=history h.db: replies rated 4 or better$' "$tmp/db.gguf" && grep -a -q '^min_rating=4$' "$tmp/db.gguf" &&
	grep -a -q '^data_source=file e.jsonl$' "$tmp/exp.gguf" && ok ||
	bad "data source from --db: $(grep -a -E '^(data|min_rating)' "$tmp/db.gguf" "$tmp/exp.gguf")"
# The database's name too: a newline in it starts no line (no second min_rating).
nl=$(printf 'h\nmin_rating=1.db')
cp "$tmp/h.db" "$tmp/$nl"
ft -m "$M" --db "$tmp/$nl" $db -o "$tmp/dbnl.gguf" >/dev/null 2>&1; check "--db named with a newline status" 0 $?
if grep -a -q -F -x 'data_source=history h\nmin_rating=1.db: replies rated 4 or better' "$tmp/dbnl.gguf"; then
	check "min_rating lines, --db named with a newline" 1 "$(grep -a -c '^min_rating=' "$tmp/dbnl.gguf")"
else
	bad "--db named with a newline: $(grep -a -E '^(data|min_rating)' "$tmp/dbnl.gguf" | od -c | head -5)"
fi
ft -m "$M" --db "$tmp/h.db" $db --min-rating 5 -o "$tmp/db5.gguf" >/dev/null 2>&1; check "--min-rating 5 status" 0 $?
grep -a -q '^data_source=history h.db: replies rated 5 or better$' "$tmp/db5.gguf" && grep -a -q '^min_rating=5$' "$tmp/db5.gguf" &&
	ok || bad "--min-rating 5 recorded: $(grep -a -E '^(data|min_rating)' "$tmp/db5.gguf")"
ft -m "$M" $db --method dpo -o "$tmp/dbd.gguf" >/dev/null 2>"$tmp/err"; check "DPO from the default database status" 0 $?
grep -q "1 pairs" "$tmp/err" && ok || bad "DPO from the database: $(cat "$tmp/err")"
grep -a -q '^data_source=history h.db: pairs of replies to one turn rated differently$' "$tmp/dbd.gguf" &&
	! grep -a -q '^min_rating=' "$tmp/dbd.gguf" && ok || bad "DPO data source: $(grep -a -E '^(data|min_rating)' "$tmp/dbd.gguf")"
# A database with a conversation but no rating.
echo "An unrated message" | "$NATTER_BIN" chat -m "$M" --plain -n 4 --db "$tmp/empty.db" >/dev/null 2>&1
ft -m "$M" $db --min-rating 5 --db "$tmp/empty.db" -o "$tmp/x.gguf" 2>"$tmp/err"; check "empty database status" 1 $?
grep -q "no rated reply to train on" "$tmp/err" && ok || bad "empty database: $(cat "$tmp/err")"
# --log, -o and the checkpoint are never the history database, however it is named
# ($NATTER_DB, the config file, the default place) and whether or not the run reads it
# (--data): refused before anything is loaded, the history kept byte for byte.
mkdir -p "$tmp/xdg/natter" "$tmp/cfg/natter" "$tmp/nocfg"
cp "$tmp/h.db" "$tmp/xdg/natter/natter.db"; cp "$tmp/h.db" "$tmp/c.db"
echo "db = $tmp/c.db" > "$tmp/cfg/natter/config"
ln -s "$tmp/h.db" "$tmp/hl.ckpt.gguf"
sum_h=$(cksum < "$tmp/h.db") sum_x=$(cksum < "$tmp/xdg/natter/natter.db") sum_c=$(cksum < "$tmp/c.db")
ft -m "$M" $db -o "$tmp/x.gguf" --log "$tmp/h.db" 2>"$tmp/err"; check "--log onto \$NATTER_DB status" 2 $?
grep -qF -- "finetune: --log $tmp/h.db is the history database ($tmp/h.db): it would be overwritten" "$tmp/err" && ok ||
	bad "--log onto \$NATTER_DB: $(cat "$tmp/err")"
ft -m "$M" --data "$D/finetune-sft.jsonl" $db -o "$tmp/x.gguf" --log "$tmp/h.db" 2>"$tmp/err"
check "--log onto \$NATTER_DB with --data status" 2 $?
ft -m "$M" $db -o "$tmp/hl.gguf" 2>"$tmp/err"; check "the checkpoint a link to the database status" 2 $?
grep -qF -- "the checkpoint $tmp/hl.ckpt.gguf is the history database ($tmp/h.db)" "$tmp/err" && ok ||
	bad "the checkpoint a link to the database: $(cat "$tmp/err")"
env -u NATTER_DB XDG_DATA_HOME="$tmp/xdg" XDG_CONFIG_HOME="$tmp/nocfg" "$NATTER_BIN" finetune -m "$M" $db \
	-o "$tmp/x.gguf" --log "$tmp/xdg/natter/natter.db" 2>"$tmp/err"; check "--log onto the default database status" 2 $?
grep -qF -- "--log $tmp/xdg/natter/natter.db is the history database ($tmp/xdg/natter/natter.db)" "$tmp/err" && ok ||
	bad "--log onto the default database: $(cat "$tmp/err")"
env -u NATTER_DB XDG_CONFIG_HOME="$tmp/cfg" "$NATTER_BIN" finetune -m "$M" $db -o "$tmp/x.gguf" \
	--log "$tmp/c.db" 2>"$tmp/err"; check "--log onto the config file's database status" 2 $?
grep -qF -- "--log $tmp/c.db is the history database ($tmp/c.db)" "$tmp/err" && ok ||
	bad "--log onto the config file's database: $(cat "$tmp/err")"
check "\$NATTER_DB kept" "$sum_h" "$(cksum < "$tmp/h.db")"
check "the default database kept" "$sum_x" "$(cksum < "$tmp/xdg/natter/natter.db")"
check "the config file's database kept" "$sum_c" "$(cksum < "$tmp/c.db")"
[ ! -e "$tmp/x.gguf" ] && ok || bad "a refused run wrote an adapter"
# A log beside the database is written as before.
ft -m "$M" $db -o "$tmp/x.gguf" --log "$tmp/h.log" >/dev/null 2>"$tmp/err"; check "--log beside the database status" 0 $?
[ -s "$tmp/h.log" ] && ok || bad "--log beside the database wrote nothing"
unset NATTER_DB

echo "test-finetune.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
