#!/bin/sh
# test-measure.sh -- natter perplexity (and --kl-base) and natter eval-choice, checked against natter eval's logits.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
F=$NATTER_FIXTURES
D=$NATTER_SRCDIR/tests/data
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
# close A B RELTOL: |A - B| <= RELTOL * |B|
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * m) }'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Usage errors exit 2; a missing file 1, with its name.
"$NATTER_BIN" perplexity -f "$D/measure.txt" 2>"$tmp/err"; check "perplexity without -m" 2 $?
grep -q "needs -m MODEL and -f TEXT" "$tmp/err" && ok || bad "perplexity usage message: $(cat "$tmp/err")"
"$NATTER_BIN" perplexity -m x.gguf -f y.txt -c ten 2>"$tmp/err"; check "perplexity -c ten" 2 $?
grep -q -- "--ctx-size wants a count, got 'ten'" "$tmp/err" && ok || bad "bad count message: $(cat "$tmp/err")"
"$NATTER_BIN" perplexity --help | grep -q -- "--kl-base OTHER" && ok || bad "perplexity --help lists --kl-base"
"$NATTER_BIN" eval-choice --help | grep -q -- "--verbose" && ok || bad "eval-choice --help lists --verbose"
"$NATTER_BIN" --help | grep -q "eval-choice -m FILE -f QUESTIONS.jsonl" && ok || bad "--help lists eval-choice"
"$NATTER_BIN" perplexity -m x.gguf -f "$tmp/none.txt" 2>"$tmp/err"; check "perplexity missing text" 1 $?
grep -q "none.txt" "$tmp/err" && ok || bad "missing text message: $(cat "$tmp/err")"

if [ ! -d "$F" ]; then
	echo "SKIP: fixtures not found; $pass passed, $fail failed"
	[ $fail -eq 0 ] && exit 77 || exit 1
fi
AID=$F/models/aidreams260K-f32.gguf

# --- perplexity ---
"$NATTER_BIN" perplexity -m "$AID" -f "$D/measure.txt" -c 2048 2>"$tmp/err" >/dev/null; check "text too short status" 1 $?
grep -q "measure.txt has [0-9]* tokens; a context of 2048 needs at least 2048" "$tmp/err" && ok || bad "short text message: $(cat "$tmp/err")"
"$NATTER_BIN" perplexity -m "$AID" -f "$D/measure.txt" -c 64 --kl-base "$tmp/none.gguf" 2>"$tmp/err" >/dev/null
check "missing --kl-base status" 1 $?
grep -q "none.gguf: cannot open" "$tmp/err" && ok || bad "missing base message: $(cat "$tmp/err")"

# The perplexity of 3 chunks of 64 equals exp(mean NLL) computed here from natter eval's
# logits of the same tokens: each chunk's first token replaced by BOS, rows 32..62 scored.
out=$("$NATTER_BIN" perplexity -m "$AID" -f "$D/measure.txt" -c 64 --chunks 3)
check "perplexity status" 0 $?
echo "$out" | grep -q '^\[1\][0-9.]*,\[2\][0-9.]*,\[3\][0-9.]*,$' && ok || bad "running PPL line: $out"
nll=$(echo "$out" | sed -n 's/^mean NLL = \([0-9.]*\) over 93 tokens$/\1/p')
ppl=$(echo "$out" | sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- [0-9.]*$/\1/p')
[ -n "$nll" ] && [ -n "$ppl" ] && ok || bad "perplexity output: $out"
ids=$("$NATTER_BIN" tokenize -m "$AID" -f "$D/measure.txt")
bos=$(echo "$ids" | cut -d' ' -f1)
sum=0
for k in 0 1 2; do
	chunk=$(echo "$ids" | tr ' ' '\n' | sed -n "$((k * 64 + 1)),$((k * 64 + 64))p" | sed "1s/.*/$bos/" | paste -sd, -)
	"$NATTER_BIN" eval -m "$AID" --tokens "$chunk" --logits-out "$tmp/l$k" || bad "eval chunk $k"
	s=$(od -An -v -tf4 -w2048 "$tmp/l$k" | awk -v toks="$chunk" '
		BEGIN { n = split(toks, t, ",") }
		{ row = NR - 1
		  if (row < 32 || row > 62) next
		  mx = $1; for (j = 2; j <= NF; j++) if ($j > mx) mx = $j
		  z = 0; for (j = 1; j <= NF; j++) z += exp($j - mx)
		  s += log(z) + mx - $(t[row + 2] + 1) }
		END { printf "%.10f", s }')
	sum=$(awk -v a="$sum" -v b="$s" 'BEGIN { printf "%.10f", a + b }')
done
mean=$(awk -v s="$sum" 'BEGIN { printf "%.10f", s / 93 }')
close "$nll" "$mean" 1e-5 && ok || bad "perplexity mean NLL $nll, from natter eval $mean"
close "$ppl" "$(awk -v m="$mean" 'BEGIN { printf "%.6f", exp(m) }')" 1e-5 && ok || bad "PPL $ppl is not exp($mean)"
echo "perplexity: aidreams260K-f32, 3 chunks of 64: mean NLL $nll (from natter eval: $mean), PPL $ppl"

# A model against itself: KL 0, the same top token everywhere.
out=$("$NATTER_BIN" perplexity -m "$F/models/tiny-llama-f32.gguf" -f "$D/measure.txt" -c 128 \
	--kl-base "$F/models/tiny-llama-f32.gguf")
echo "$out" | grep -q "^Mean KL(base || model) = 0 +/- 0, max 0, over 504 tokens$" && ok || bad "self KL: $out"
echo "$out" | grep -q "^Same top token: 100.000% +/- 0.000%$" && ok || bad "self top token: $out"
echo "$out" | grep -q "ln(PPL(model) / PPL(base)) = 0.000000$" && ok || bad "self PPL ratio: $out"

# Quantization costs against f32, over the text's 504 scored positions (8 chunks of 128),
# beside the fixtures README's quality figures (llama.cpp's own, over the goldens' greedy
# tokens: another text, so not to the digit): each within 0.5 to 1.25 times its figure --
# the bar to meet, with room for the other text, and below anything a broken kernel or KL
# gives.
kl() { # kl ARCH TYPE
	"$NATTER_BIN" perplexity -m "$F/models/tiny-$1-$2.gguf" -f "$D/measure.txt" -c 128 \
		--kl-base "$F/models/tiny-$1-f32.gguf" | sed -n 's/^Mean KL(base || model) = \([0-9.e+-]*\) .*/\1/p'
}
for ref in llama:q8_0:2.0e-3 llama:q4_0:2.7e-1 llama:q4_k_m:1.8e-1 phi3:q8_0:2.6e-3 phi3:q4_0:2.7e-1 phi3:q4_k_m:1.6e-1; do
	a=${ref%%:*}; t=${ref#*:}; t=${t%%:*}; r=${ref##*:}
	k=$(kl "$a" "$t")
	echo "mean KL of tiny-$a-$t vs f32 over 504 positions of tests/data/measure.txt: $k (fixtures: $r)"
	awk -v a="$k" -v r="$r" 'BEGIN { exit !(a >= 0.5 * r && a <= 1.25 * r) }' && ok ||
		bad "tiny-$a-$t: KL ${k:-none} not within 0.5-1.25 of the fixtures' $r"
done

# --- eval-choice ---
# The hand-made questions: the right choice is dream-like English, the others letter
# salad.  Per token the model picks every right answer; by the plain sum it picks, in
# question 2, the two-word salad: short choices win sums, which is why both are shown.
out=$("$NATTER_BIN" eval-choice -m "$AID" -f "$D/choice.jsonl" --verbose)
check "eval-choice status" 0 $?
echo "$out" | grep -q "^accuracy (mean log-probability per token): 6/6 = 100.00% +/- 0.00%$" && ok || bad "per-token accuracy: $out"
echo "$out" | grep -q "^accuracy (sum of log-probabilities):       5/6 = 83.33% +/- 15.21%$" && ok || bad "sum accuracy: $out"
echo "$out" | grep -q "^line 2: answer 1, chosen 2 (sum) 1 (per token):" && ok || bad "question 2's choices: $out"
check "blank line skipped" 6 "$(echo "$out" | grep -c '^line ')"
# The same questions with every answer moved to the next choice: nothing is right.
sed -e 's/"answer": 0}/"answer": X}/' -e 's/"answer": 1}/"answer": 0}/' -e 's/"answer": 2}/"answer": 1}/' \
	-e 's/"answer": X}/"answer": 1}/' "$D/choice.jsonl" > "$tmp/moved.jsonl"
"$NATTER_BIN" eval-choice -m "$AID" -f "$tmp/moved.jsonl" | grep -q "per token): 0/6 = 0.00%" && ok || bad "moved answers still right"
"$NATTER_BIN" eval-choice -m "$AID" -f "$D/choice.jsonl" --limit 2 | grep -q "^questions: 2$" && ok || bad "--limit 2"

# A choice's score is the sum of log p(token) over its tokens, from natter eval's logits
# of question and choice alone (a vocabulary of 512: rows of 2048 bytes).
choice_ref() { # choice_ref MODEL QUESTION CHOICE
	q=$("$NATTER_BIN" tokenize -m "$1" "$2" | wc -w)
	whole=$("$NATTER_BIN" tokenize -m "$1" "$2 $3" | tr ' ' ',')
	"$NATTER_BIN" eval -m "$1" --tokens "$whole" --logits-out "$tmp/q1"
	od -An -v -tf4 -w2048 "$tmp/q1" | awk -v toks="$whole" -v q="$q" '
		BEGIN { n = split(toks, t, ",") }
		{ row = NR - 1
		  if (row < q - 1 || row > n - 2) next
		  mx = $1; for (j = 2; j <= NF; j++) if ($j > mx) mx = $j
		  z = 0; for (j = 1; j <= NF; j++) z += exp($j - mx)
		  s += $(t[row + 2] + 1) - mx - log(z) }
		END { printf "%.6f", s }'
}
ref=$(choice_ref "$AID" "I dreamed that" "the stars were whispering secrets")
got=$(echo "$out" | sed -n 's/^line 1: .* \[0\] \([-0-9.]*\) .*/\1/p')
close "$got" "$ref" 1e-5 && ok || bad "question 1 choice 0: $got, from natter eval $ref"
# A hybrid model (Gated DeltaNet layers): a recurrent state cannot step back, so each
# choice after the first starts from the state kept at the question's end (they were
# scored as if the question were one token long).
H=$F/models/tiny-qwen35-f32.gguf
out=$("$NATTER_BIN" eval-choice -m "$H" -f "$D/choice.jsonl" --verbose)
check "eval-choice on qwen35 status" 0 $?
for c in "1 0 I dreamed that|the stars were whispering secrets" "1 1 I dreamed that|qzx vvkj wpfq zzrt" \
    "2 2 Once upon a time|zxqv bbkr"; do
	set -- $c
	line=$1 k=$2
	qc=${c#* * }
	ref=$(choice_ref "$H" "${qc%%|*}" "${qc#*|}")
	got=$(echo "$out" | sed -n "s/^line $line: .* \\[$k\\] \\([-0-9.]*\\) .*/\\1/p")
	close "$got" "$ref" 1e-5 && ok || bad "qwen35 question $line choice $k: $got, from natter eval $ref"
done

# A question too long for the context is refused before any is scored (scores printed
# before it were thrown away with the rest).
printf '%s\n' '{"question": "I dreamed that", "choices": ["the stars", "a cat"], "answer": 0}' \
	'{"question": "Once upon a time", "choices": ["there was a little girl who lived in a big house by the sea", "no"], "answer": 0}' \
	> "$tmp/long.jsonl"
"$NATTER_BIN" eval-choice -m "$AID" -f "$tmp/long.jsonl" -c 16 --verbose > "$tmp/out" 2> "$tmp/err"
check "a question over the context status" 1 $?
grep -q "long.jsonl:2: question and choice 0 are [0-9]* tokens, over the context of 16 (use -c)" "$tmp/err" &&
	[ ! -s "$tmp/out" ] && ok || bad "over the context: $(cat "$tmp/err") / $(cat "$tmp/out")"

# Malformed question files: the line and what is wrong, before any model is loaded.
bad_q() { # bad_q LABEL CONTENT EXPECTED
	printf '%s\n' "$2" > "$tmp/q.jsonl"
	"$NATTER_BIN" eval-choice -m "$tmp/never-loaded.gguf" -f "$tmp/q.jsonl" 2>"$tmp/err" >/dev/null
	st=$?
	if [ $st -eq 1 ] && grep -q "$3" "$tmp/err"; then ok; else bad "$1: status $st, $(cat "$tmp/err")"; fi
}
bad_q "not JSON" '{"question": "a", "choices": ["b", "c"], "answer": 0}
{oops' 'q.jsonl:2: not valid JSON'
bad_q "not an object" '[1, 2]' 'q.jsonl:1: not a JSON object'
bad_q "no question" '{"choices": ["b", "c"], "answer": 0}' 'q.jsonl:1: "question" is missing'
bad_q "one choice" '{"question": "a", "choices": ["b"], "answer": 0}' 'q.jsonl:1: "choices" is missing or not an array of at least two'
bad_q "answer out of range" '{"question": "a", "choices": ["b", "c"], "answer": 2}' 'q.jsonl:1: "answer" is missing or not the index'
bad_q "answer not integer" '{"question": "a", "choices": ["b", "c"], "answer": 0.5}' 'q.jsonl:1: "answer"'
bad_q "empty choice" '{"question": "a", "choices": ["b", ""], "answer": 0}' 'q.jsonl:1: a choice is not a non-empty string'
bad_q "no questions" '' 'q.jsonl: no questions'
# Nothing of a line is lost: a second object on it, a NUL (raw or escaped), bytes
# that are not UTF-8; and a question of too many choices is refused before loading too.
bad_q "two objects" '{"question": "a", "choices": ["b", "c"], "answer": 0}{"question": "d", "choices": ["e", "f"], "answer": 1}' \
	'q.jsonl:1: more after the JSON object (one question a line)'
bad_q "escaped NUL" '{"question": "a\u0000b", "choices": ["b", "c"], "answer": 0}' 'q.jsonl:1: a NUL character (\\u0000) in a string'
bad_q "not UTF-8" "$(printf '{"question": "a\377", "choices": ["b", "c"], "answer": 0}')" 'q.jsonl:1: not valid UTF-8 (byte 16 of the line)'
printf '{"question": "a", "choices": ["b", "c"], "answer": 0}\n\000{"question": "a", "choices": ["b", "c"], "answer": 0}\n' > "$tmp/q.jsonl"
"$NATTER_BIN" eval-choice -m "$tmp/never-loaded.gguf" -f "$tmp/q.jsonl" 2>"$tmp/err" >/dev/null
check "raw NUL status" 1 $?
grep -q 'q.jsonl:2: a NUL byte in the line' "$tmp/err" && ok || bad "raw NUL: $(cat "$tmp/err")"
awk 'BEGIN { printf "{\"question\": \"a\", \"answer\": 0, \"choices\": [\"x\""; for (i = 0; i < 4096; i++) printf ", \"x\""; print "]}" }' \
	> "$tmp/q.jsonl"
"$NATTER_BIN" eval-choice -m "$tmp/never-loaded.gguf" -f "$tmp/q.jsonl" 2>"$tmp/err" >/dev/null
check "4097 choices status" 1 $?
grep -q 'q.jsonl:1: more than 4096 choices' "$tmp/err" && ok || bad "4097 choices: $(cat "$tmp/err")"

echo "test-measure: $pass passed, $fail failed"
[ $fail -eq 0 ]
