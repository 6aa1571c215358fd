#!/bin/sh
# test-families.sh -- each architecture family chats (chat --plain with a real template, the full screen in tmux) and is described by info.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
F=$NATTER_FIXTURES
if [ ! -d "$F/models" ] || [ ! -d "$F/templates" ]; then echo "SKIP: fixtures not found"; exit 77; fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
# One tmux server per family, its socket in $tmp.
T() { tmux -S "$tmp/tmux-$fam" "$@"; }
cleanup() { for s in "$tmp"/tmux-*; do [ -S "$s" ] && tmux -S "$s" kill-server 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
export NATTER_DB="$tmp/f.db" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" LANG=C.UTF-8 LC_ALL=C.UTF-8

# One family a line: name, model file, chat template (templates/NAME.jinja).
families="
llamamoe tiny-llamamoe-q4_k_m mistralai-Mistral-Nemo-Instruct-2407
phi3lr   tiny-phi3lr-q4_k_m   microsoft-Phi-3.5-mini-instruct
qwen3    tiny-qwen3-q4_k_m    Qwen-Qwen3
qwen3moe tiny-qwen3moe-q4_k_m Qwen-Qwen3
qwen2moe tiny-qwen2moe-q4_k_m Qwen-Qwen2.5-7B-Instruct
gemma2   tiny-gemma2-q4_k_m   google-gemma-2-2b-it
gemma3   tiny-gemma3-q4_k_m   google-gemma-3
qwen35   tiny-qwen35-q8_0     Qwen-Qwen3
"

# 1. chat --plain: two turns and a regeneration; the second turn and the
# regeneration reuse the cache (sliding-window rings included).
while read -r fam model tmpl; do
	[ -n "$fam" ] || continue
	printf 'Hello there\n/stats\nTell me more\n/stats\n/regen\n/stats\n/quit\n' |
	    "$NATTER_BIN" chat -m "$F/models/$model.gguf" --plain --chat-template "$F/templates/$tmpl.jinja" \
	    -n 12 --seed 3 --db "$tmp/$fam.db" > "$tmp/$fam.out" 2> "$tmp/$fam.err"
	s=$?
	[ $s -eq 0 ] && ok || bad "$fam: chat --plain status $s: $(cat "$tmp/$fam.err")"
	"$NATTER_BIN" history show 1 --db "$tmp/$fam.db" | grep -q "template .*/$tmpl.jinja" && ok ||
	    bad "$fam: the stored conversation does not name the template $tmpl.jinja"
	# Random weights may end a turn at once; one reply at least has text.
	n=$(grep -c "^reply: [0-9]* tokens" "$tmp/$fam.out")
	[ "$n" = 3 ] && grep -q "^reply: [1-9][0-9]* tokens" "$tmp/$fam.out" && ok ||
	    bad "$fam: $n replies, want 3 (not all empty): $(cat "$tmp/$fam.out")"
	reused=$(sed -n 's/^prompt:.*(\([0-9]*\) reused.*/\1/p' "$tmp/$fam.out" | tr '\n' ' ')
	set -- $reused
	[ $# -eq 3 ] && [ "$1" -eq 0 ] && [ "$2" -gt 0 ] && [ "$3" -gt 0 ] && ok ||
	    bad "$fam: tokens reused from the cache per turn: $reused (want 0, then more than 0 twice)"
	echo "$fam: chat --plain with $tmpl.jinja; tokens reused per turn: $reused"
done <<EOF
$families
EOF

# 1b. A regeneration after a reply longer than the ring: a sliding-window
# layer has lost keys the new turn needs, so the cache keeps nothing and
# the prompt is evaluated again (llm_ctx_truncate said so); a full cache
# keeps the prompt.  Random weights may end a reply early, and which seed
# gives a full 300 tokens moves with every rounding of the kernels and the
# cache, so the first seed of 1..8 whose first reply is 300 tokens long is
# the one judged (all eight short fails).
regen_reuse() { # MODEL TEMPLATE SEED: prints "FIRST_REPLY_TOKENS REUSED_AT_REGEN"
	printf 'Hello there\n/stats\n/regen\n/stats\n' |
	    "$NATTER_BIN" chat -m "$F/models/$1.gguf" --plain --chat-template "$F/templates/$2.jinja" -n 300 \
	    --seed "$3" --no-history 2>/dev/null |
	    awk '/^reply:/ && !r { r = $2 } /^prompt:/ { n++; if (n == 2) { sub(/.*\(/, ""); u = $1 } } END { print r + 0, u + 0 }'
}
long_reply() { # MODEL TEMPLATE
	for seed in 1 2 3 4 5 6 7 8; do
		res=$(regen_reuse "$1" "$2" $seed)
		[ "${res%% *}" -eq 300 ] && break
	done
	echo "$res"
}
set -- $(long_reply tiny-gemma3-q4_k_m google-gemma-3)
[ "$1" -eq 300 ] && [ "$2" -eq 0 ] && ok ||
    bad "gemma3: after a reply of $1 tokens (want 300) the ring (260 slots) cannot serve the regeneration, yet $2 tokens were reused"
set -- $(long_reply tiny-qwen35-q8_0 Qwen-Qwen3)
[ "$1" -gt 0 ] && [ "$2" -gt 0 ] && ok ||
    bad "qwen35: after a reply of $1 tokens the recurrent state did not go back to its checkpoint ($2 tokens reused)"
echo "qwen35: a regeneration after a reply of $1 tokens reused $2 (the checkpoint before the prompt's last token)"
set -- $(long_reply tiny-llamamoe-q4_k_m mistralai-Mistral-Nemo-Instruct-2407)
[ "$1" -eq 300 ] && [ "$2" -gt 0 ] && ok ||
    bad "llamamoe: after a reply of $1 tokens (want 300) a full cache keeps the prompt, yet $2 tokens were reused"

# 1c. Context overflow: ten turns through a context of 256 (about 85
# tokens a turn).  A turn that drops the oldest turns is evaluated again
# (a recurrent state from 0, a KV cache from the end of what the prompts
# share), and the window moves far enough that the next turn extends the
# cache: every turn that reuses less than the previous prompt (all but its
# last token, for a recurrent state that goes back to the checkpoint there
# when the stored reply is not the text evaluated) is one that dropped
# turns, and at least two turns after an overflow reuse it.
overflow_reuse() { # MODEL TEMPLATE: prints "DROPS SHORT AFTER"
	i=0
	while [ $i -lt 10 ]; do
		i=$((i + 1))
		printf 'Tell me about the number %d, please.\n/stats\n' $i
	done | "$NATTER_BIN" chat -m "$F/models/$1.gguf" --plain ${2:+--chat-template "$F/templates/$2.jinja"} \
	    -c 256 -n 12 --seed 3 --no-history > "$tmp/overflow.out" 2> "$tmp/overflow.err"
	awk -v drops="$(grep -c 'dropped the' "$tmp/overflow.err")" '/^prompt:/ { n = $2; sub(/.*\(/, ""); u = $1
		if (t && u < prev - 1) short++
		else if (short) after++
		prev = n + u; t++ }
		END { print drops, short + 0, after + 0 }' "$tmp/overflow.out"
}
for fm in qwen35:tiny-qwen35-q8_0:Qwen-Qwen3 qwen3:tiny-qwen3-q4_k_m:Qwen-Qwen3 llama:tiny-llama-q8_0:; do
	fam=${fm%%:*}; rest=${fm#*:}
	set -- $(overflow_reuse "${rest%%:*}" "${rest#*:}")
	[ "$1" -ge 1 ] && [ "$2" -eq "$1" ] && [ "$3" -ge 2 ] && ok ||
	    bad "$fam: -c 256: $1 turns dropped messages, $2 reused less than the previous prompt, $3 after an overflow reused it (want as many as dropped, and 2)"
	echo "$fam: -c 256: $1 turns dropped messages, $2 reused less than the previous prompt, $3 after an overflow reused it"
done

# 2. The full-screen chat, once per family: a reply streams to the end,
# then F10 quits with status 0.
if ! command -v tmux >/dev/null 2>&1; then
	echo "SKIP: tmux not installed (full-screen part)"
else
	screen() { T capture-pane -t ui -p; }
	# wait_for PATTERN [SECONDS]: poll the screen until it shows PATTERN
	wait_for() {
		i=0
		while [ $i -lt $(( ${2:-15} * 10 )) ]; do
			screen 2>/dev/null | grep -Eq "$1" && return 0
			sleep 0.1
			i=$((i + 1))
		done
		return 1
	}
	while read -r fam model tmpl; do
		[ -n "$fam" ] || continue
		rm -f "$tmp/ui.status"
		T new-session -d -s ui -x 100 -y 30 \
		    "sh -c '\"$NATTER_BIN\" -m \"$F/models/$model.gguf\" --chat-template \"$F/templates/$tmpl.jinja\" --seed 3 -n 16 --theme mono; echo \$? > \"$tmp/ui.status\"'; sleep 60"
		wait_for "Type a message" && ok || bad "$fam: full screen: no start screen: $(screen)"
		T send-keys -t ui "Hello there" Enter
		wait_for "state +done" && ok || bad "$fam: full screen: the reply did not finish: $(screen)"
		screen | grep -Eq "reply +[0-9]+ tokens" && screen | grep -Eq "prompt +[1-9][0-9.]* tok/s" && ok ||
		    bad "$fam: full screen: no statistics of the reply: $(screen)"
		# A hybrid's pane shows the memory of its recurrent states.
		if [ "$fam" = qwen35 ]; then
			screen | grep -Eq "recurrent +57.0 KiB" && screen | grep -Eq "checkpts +[0-9.]+ KiB" && ok ||
			    bad "$fam: full screen: no memory of the recurrent states: $(screen)"
		fi
		T send-keys -t ui F10
		i=0; while [ ! -f "$tmp/ui.status" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
		[ "$(cat "$tmp/ui.status" 2>/dev/null)" = 0 ] && ok || bad "$fam: full screen: quit status $(cat "$tmp/ui.status" 2>/dev/null)"
		echo "$fam: full-screen chat replied and quit"
		T kill-server 2>/dev/null
	done <<EOF
$families
EOF
fi

# 3. natter info says what the description of each family holds.
info() { "$NATTER_BIN" info -m "$F/models/$1.gguf"; }
expect() { # expect MODEL PATTERN: info shows PATTERN (grep -E)
	if info "$1" | grep -Eq "$2"; then ok; else bad "info $1: no \"$2\": $(info "$1" | sed -n '/^as natter/,/^tokenizer/p')"; fi
}
expect tiny-gemma3-f32 "layers +8: 1 full attention, 7 sliding window of 5 positions"
expect tiny-gemma3-f32 "layer pattern +SSSSSFSS "
expect tiny-gemma3-f32 "base 10000 \(7 sliding layers\)"
expect tiny-gemma3-f32 "base 1e\+06, linear scaling 1/8 \(1 full layer\)"
expect tiny-gemma3-f32 "per-head q/k RMSNorm"
expect tiny-gemma2-f32 "layer pattern +SFSFSFSFSFSFSFSFSFSFSFSFSF "
expect tiny-gemma2-f32 "soft-caps +attention 4, final logits 15"
expect tiny-gemma2-f32 "embeddings +tied output, inputs x 16"
expect tiny-llamamoe-f32 "experts +4, 2 used per token \(softmax router, weights renormalised\), n_ff 128"
expect tiny-qwen2moe-f32 "experts +4, 2 used per token \(softmax router, weights as routed\), n_ff 128 each; a shared expert \(n_ff 256"
expect tiny-qwen3moe-f32 "experts +8, 2 used per token \(softmax router, weights renormalised\), n_ff 64"
expect tiny-phi3lr-f32 "on 48 of 64 dimensions, LongRoPE factors \(long above 32 positions\), attn_factor 1.34"
expect tiny-qwen3-f32 "attention +4 heads of 96, 2 KV heads"
expect tiny-qwen35-f32 "layers +4: 1 full attention, 3 recurrent \(Gated DeltaNet\)"
expect tiny-qwen35-f32 "layer pattern +RRRF "
expect tiny-qwen35-f32 "sigmoid output gate per head"
expect tiny-qwen35-f32 "Gated DeltaNet +2 key heads and 4 value heads of 32, conv kernel 4"
expect tiny-qwen35-f32 "recurrent state +19.0 KiB per recurrent layer \(conv 3 x 256, 4 x 32 x 32\), 57.0 KiB per session"
expect tiny-qwen35-f32 "KV cache +512 B per position \(1 attention layer, f16, the default --kv-type\)"
expect tiny-qwen35-f32 "NeoX \(i, i\+d/2\) pairs on 16 of 64 dimensions"
expect tiny-gemma2-f32 "\(13 x SF; F full"
n=$("$NATTER_BIN" info --architectures | grep -c "^  [a-z0-9]")
[ "$n" -eq 9 ] && ok || bad "info --architectures lists $n architectures"

echo "test-families.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
