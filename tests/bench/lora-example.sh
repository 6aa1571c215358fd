#!/bin/sh
# lora-example.sh -- the README's worked example of the LoRA loop, run as written: chat and rate, finetune, perplexity on held-out text before and after, chat with the adapter.
#   usage: tests/bench/lora-example.sh [DIR]     (from the build directory; DIR: /tmp/natter-loop, emptied first)
#   environment: NATTER_BIN (./natter); NATTER_FIXTURES (../shared/fixtures).
# The replies "we liked" are chosen by a rule, so that the run repeats: those that speak of
# whispers and ended by themselves (at the stop string, not cut by -n or the context).
# Not part of make check (about a minute on one thread).
set -e
natter=$(cd "$(dirname "${NATTER_BIN:-./natter}")" && pwd)/$(basename "${NATTER_BIN:-./natter}")
m=$(cd "${NATTER_FIXTURES:-../shared/fixtures}/models" && pwd)/aidreams260K-f32.gguf
dir=${1:-/tmp/natter-loop}
mkdir -p "$dir"
cd "$dir"
rm -f dream.db* held.db* s.db* whispers.gguf heldout.txt heldout-bare.txt
# ask DB SEED [--lora A]: the three questions, 40 replies to each (the first and 39 /regen).
ask() {
	db=$1; seed=$2; shift 2
	for q in "Tell me about your dream." "What did you see last night?" "Describe your dream."; do
		echo "$q"
		i=1; while [ $i -lt 40 ]; do echo /regen; i=$((i + 1)); done
		echo /new
	done | "$natter" chat -m "$m" --plain --chat-template chatml --db "$db" --seed "$seed" -n 100 \
		--stop '<|im_end|>' -t 1 "$@" >/dev/null 2>&1
}
liked="lower(content) LIKE '%whisper%' AND end_reason IN ('finished', 'stop-string')"
speaks="sum(lower(content) LIKE '%whisper%') || ' of ' || count(*) || ' replies speak of whispers, ' || sum(end_reason IN ('finished', 'stop-string')) || ' finished'"

echo "1. chat and rate"
ask dream.db 1
for id in $(sqlite3 dream.db "SELECT id FROM generations WHERE $liked"); do
	"$natter" rate --db dream.db "$id" up >/dev/null
done
echo "   $(sqlite3 dream.db "SELECT $speaks FROM generations"); rated up: $(sqlite3 dream.db "SELECT count(*) FROM ratings")"

echo "2. train"
"$natter" finetune -m "$m" --db dream.db --chat-template chatml --epochs 8 --lr 1e-3 -t 1 --name whispers \
	-o whispers.gguf 2>&1 | grep -v '^step' | sed 's/^/   /'

echo "3. chat with the adapter (seed 2000)"
ask s.db 2000
echo "   without the adapter   $(sqlite3 s.db "SELECT $speaks FROM generations")"
rm -f s.db*
ask s.db 2000 --lora whispers.gguf
echo "   --lora whispers.gguf  $(sqlite3 s.db "SELECT $speaks FROM generations")"
printf 'Tell me about your dream.\n' | "$natter" chat -m "$m" --plain --chat-template chatml --no-history --seed 7 \
	-n 100 --stop '<|im_end|>' -t 1 --lora whispers.gguf 2>/dev/null | sed 's/^/   --seed 7: /'

echo "4. perplexity on held-out text (a session of seed 1000, its finished replies that speak of whispers)"
ask held.db 1000
sqlite3 held.db "SELECT '<|im_start|>user' || char(10) || u.content || '<|im_end|>' || char(10) ||
	'<|im_start|>assistant' || char(10) || g.content || '<|im_end|>' FROM generations g
	JOIN messages a ON a.id = g.message_id JOIN messages u ON u.id = a.parent_id
	WHERE lower(g.content) LIKE '%whisper%' AND g.end_reason IN ('finished', 'stop-string') ORDER BY g.id" > heldout.txt
echo "   $(grep -c '^<|im_start|>assistant' heldout.txt) replies held out"
echo "   without the adapter   $("$natter" perplexity -m "$m" -f heldout.txt -c 128 -t 1 | tail -1)"
echo "   with it               $("$natter" perplexity -m "$m" --lora whispers.gguf -f heldout.txt -c 128 -t 1 | tail -1)"
"$natter" perplexity -m "$m" --lora whispers.gguf --kl-base "$m" -f heldout.txt -c 128 -t 1 | grep -i 'KL\|top' |
	sed 's/^/   /'
# The same replies' bare text (no chat markup): what the adapter changes apart from the form.
sqlite3 held.db "SELECT g.content FROM generations g WHERE lower(g.content) LIKE '%whisper%'
	AND g.end_reason IN ('finished', 'stop-string') ORDER BY g.id" > heldout-bare.txt
echo "   bare text, -c 64: without $("$natter" perplexity -m "$m" -f heldout-bare.txt -c 64 -t 1 | tail -1 | sed 's/Final estimate: //'),"
echo "                     with    $("$natter" perplexity -m "$m" --lora whispers.gguf -f heldout-bare.txt -c 64 -t 1 | tail -1 | sed 's/Final estimate: //')"
