#!/bin/sh
# test-remote.sh -- natter over remote OpenAI-compatible servers: a scripted chat --plain session
# against natter serve; the recorded streams of real engines replayed (tests/remote-server.py,
# tests/data/remote/), every failure with its message and nothing lost from the history; the API
# key nowhere.  Loopback only, ports the kernel picks.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
has() { # has LABEL FILE TEXT: FILE holds TEXT (a fixed string)
	if grep -qF -- "$3" "$2"; then ok; else bad "$1: no [$3] in: $(cat "$2")"; fi
}
tmp=$(mktemp -d)
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

for tool in python3 sqlite3; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "SKIP: $tool is needed (tools/install-deps.sh installs it)"
		exit 77
	fi
done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
M=$NATTER_FIXTURES/models/aidreams260K-f32.gguf
if [ ! -f "$M" ]; then
	echo "SKIP: fixtures not found"
	exit 77
fi
D=$NATTER_SRCDIR/tests/data/remote
export HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config"
mkdir -p "$HOME"
# The system's certificate authorities, whatever the caller's environment says.
unset NATTER_DB OPENAI_API_KEY CURL_CA_BUNDLE
key="sk-remote-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
q() { sqlite3 "$1" "$2"; }
# until_ok CMD...: runs CMD every 0.1 s until it succeeds, for up to 30 s.
until_ok() {
	i=0
	while [ $i -lt 300 ]; do
		"$@" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# --- 1. A chat --plain session against natter serve ---
printf '%s' "{% for message in messages %}{{ message['content'] }}{% endfor %}" > "$tmp/raw.jinja"
"$NATTER_BIN" serve -m "$M" --port 0 -t 1 --db "$tmp/serve.db" --chat-template "$tmp/raw.jinja" -c 256 \
	2>"$tmp/serve.log" &
pids="$pids $!"
listening() { grep -q "listening on" "$tmp/serve.log" 2>/dev/null; }
until_ok listening && ok || { bad "natter serve did not start: $(cat "$tmp/serve.log")"; exit 1; }
S=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/v1 .*|\1|p' "$tmp/serve.log")
EP="http://127.0.0.1:$S/v1"

"$NATTER_BIN" models --remote "http://127.0.0.1:$S" >"$tmp/models.out" 2>&1; check "models --remote status" 0 $?
grep -Eq "^aidreams260K-f32 +natter " "$tmp/models.out" && ok || bad "models --remote: $(cat "$tmp/models.out")"

printf 'Tell me a dream\n/rate down\n/set temp 0\n/params\n/regen\n/rate up\n/stats\n' |
	"$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$S" -m aidreams260K-f32 --db "$tmp/c.db" -n 16 --seed 7 \
	>"$tmp/s.out" 2>"$tmp/s.err"
check "session status" 0 $?
has "first rating" "$tmp/s.out" "rated generation 1 down"
has "set temp" "$tmp/s.out" "temp = 0"
has "second rating" "$tmp/s.out" "rated generation 2 up"
has "regeneration moves the seed" "$tmp/s.err" "seed 7 would repeat the same reply: regenerating with seed 8"
has "stats: a context the client does not know" "$tmp/s.out" "context: not known (the server's); seed 8"
has "stats: the server's token count" "$tmp/s.out" "reply: 16 tokens"
# What natter recorded, and what natter serve recorded of the same two requests.
check "one remote model row" "remote|$EP|aidreams260K-f32|1" \
	"$(q "$tmp/c.db" "SELECT kind, endpoint, file_name, count(*) FROM models")"
check "both replies record it" "2" \
	"$(q "$tmp/c.db" "SELECT count(*) FROM generations g JOIN models md ON md.id = g.model_id WHERE md.kind = 'remote'")"
check "temperatures and seeds recorded" "0.800000011920929 7|0.0 8" \
	"$(q "$tmp/c.db" "SELECT group_concat(temp || ' ' || seed, '|') FROM (SELECT temp, seed FROM generations ORDER BY id)")"
check "the server was sent them" "0.800000011920929 7|0.0 8" \
	"$(q "$tmp/serve.db" "SELECT group_concat(temp || ' ' || seed, '|') FROM (SELECT temp, seed FROM generations ORDER BY id)")"
check "the replies arrived whole" "$(q "$tmp/serve.db" "SELECT group_concat(hex(content), '|') FROM (SELECT content FROM generations ORDER BY id)")" \
	"$(q "$tmp/c.db" "SELECT group_concat(hex(content), '|') FROM (SELECT content FROM generations ORDER BY id)")"
check "ended at max tokens, counted by the server" "max-tokens 16|max-tokens 16" \
	"$(q "$tmp/c.db" "SELECT group_concat(end_reason || ' ' || n_gen, '|') FROM (SELECT * FROM generations ORDER BY id)")"
check "the request is the prompt recorded" "1" \
	"$(q "$tmp/c.db" "SELECT prompt_text LIKE '%\"temperature\":0,%' AND prompt_text LIKE '%\"seed\":8%' FROM generations WHERE id = 2")"
check "an unknown context is NULL" "1" "$(q "$tmp/c.db" "SELECT n_ctx IS NULL AND n_ctx_used IS NULL FROM generations WHERE id = 2")"
"$NATTER_BIN" history show 1 --db "$tmp/c.db" >"$tmp/hs.out" 2>&1
has "history names the endpoint" "$tmp/hs.out" "with aidreams260K-f32 @ $EP (remote)"
# A conversation natter serve recorded with a system message amid it, resumed over --remote
# (against that server): the system prompt first and the other system message in its place, as
# the server records what it was sent.
curl -s -o "$tmp/mid.json" -H 'Content-Type: application/json' --data-binary '{"model": "aidreams260K-f32",
  "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I"},
  {"role": "system", "content": " dreamed"}, {"role": "user", "content": " that"}], "max_tokens": 2}' "$EP/chat/completions"
# (A copy by SQLite's backup: the server's last writes may be in its write-ahead log.)
midconv=$("$PY" -c 'import sqlite3, sys
src = sqlite3.connect(sys.argv[1])
src.backup(sqlite3.connect(sys.argv[2]))
print(src.execute("SELECT max(id) FROM conversations").fetchone()[0])' "$tmp/serve.db" "$tmp/mid.db")
printf 'Then\n' | "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$S" -m aidreams260K-f32 --db "$tmp/mid.db" \
	--resume "$midconv" -n 2 >"$tmp/mid.out" 2>"$tmp/mid.err"
check "resumed with a system message amid it, sent in its place" "Be brief.|user,system,user,assistant,user,assistant" \
	"$("$PY" - "$tmp/serve.db" "$midconv" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
c, sysp = db.execute("SELECT id, system_prompt FROM conversations WHERE id > ? ORDER BY id DESC", (int(sys.argv[2]),)).fetchone() or (0, None)
roles = [r[0] for r in db.execute("SELECT role FROM messages WHERE conversation_id = ? ORDER BY id", (c,))]
print("%s|%s" % (sysp, ",".join(roles)))
EOF
)"
# Export: the pair, and --model finds the remote model by kind, endpoint or id.
for sel in remote "127.0.0.1:$S" aidreams; do
	"$NATTER_BIN" export --db "$tmp/c.db" --format dpo --min-rating 1 --include-incomplete --model "$sel" -o "$tmp/dpo.jsonl" 2>"$tmp/x.err"
	check "export --model $sel status" 0 $?
	check "export --model $sel: the pair" "1 True" "$("$PY" - "$tmp/dpo.jsonl" "$tmp/c.db" <<'EOF'
import json, sqlite3, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
db = sqlite3.connect(sys.argv[2])
g = [r[0] for r in db.execute("SELECT content FROM generations ORDER BY id")]
ok = len(lines) == 1 and lines[0]["chosen"][-1]["content"] == g[1] and lines[0]["rejected"][-1]["content"] == g[0] \
    and lines[0]["prompt"][-1]["content"] == "Tell me a dream"
print(len(lines), ok)
EOF
)"
done
"$NATTER_BIN" export --db "$tmp/c.db" --format dpo --min-rating 1 --include-incomplete --model file -o "$tmp/dpo2.jsonl" 2>/dev/null
check "export --model file: none" "0" "$(wc -l < "$tmp/dpo2.jsonl" | tr -d ' ')"
# Without -m: the server's only model.
printf 'Hi\n' | "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$S" --no-history -n 2 >"$tmp/d.out" 2>"$tmp/d.err"
check "the server's only model" "0" "$?"
# The settings of a model run here, given on the command line, are refused
# before anything is sent (port 9: nothing listens), not silently ignored;
# from the config file (which also serves model files) they pass.
for opt in "-c 8" "-t 1" "--kv-type q8_0" "--exact-act" "--chat-template chatml"; do
	# shellcheck disable=SC2086
	printf 'Hi\n' | "$NATTER_BIN" chat --plain --remote http://127.0.0.1:9/v1 -m any --no-history $opt \
	    >/dev/null 2>"$tmp/local.err"
	check "chat --remote $opt: status" 1 $?
	grep -q -e "${opt%% *}.*: applies to a model run here, not to one on a server (http://127.0.0.1:9/v1)" "$tmp/local.err" &&
	    ok || bad "chat --remote $opt: $(cat "$tmp/local.err")"
done
mkdir -p "$tmp/cfgl/natter"
printf 'ctx_size = 64\nkv_type = q8_0\n' > "$tmp/cfgl/natter/config"
printf 'Hi\n' | XDG_CONFIG_HOME=$tmp/cfgl "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$S" --no-history -n 2 \
    >/dev/null 2>"$tmp/d.err"
check "the config file's local settings with --remote" "0" "$?"

# A/B over the server: the last reply again at another temperature, the better one picked; both
# replies record the endpoint, the server was sent each temperature, the preference is exported.
printf 'Tell me a dream\n/ab temp 1.5\n/pick b\n' |
	"$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$S" -m aidreams260K-f32 --db "$tmp/ab.db" -n 12 --seed 3 \
	>"$tmp/ab.out" 2>"$tmp/ab.err"
check "A/B: status" 0 $?
has "A/B: A shown" "$tmp/ab.out" "A (temp 0.80, top_p 0.95, seed 3):"
has "A/B: B shown" "$tmp/ab.out" "B (temp 1.50, top_p 0.95, seed 3):"
has "A/B: picked" "$tmp/ab.out" "picked B"
check "A/B: both replies from the server" "remote $EP 0.8|remote $EP 1.5" \
	"$(q "$tmp/ab.db" "SELECT group_concat(kind || ' ' || endpoint || ' ' || round(temp, 2), '|') FROM (SELECT md.kind, md.endpoint, g.temp FROM generations g JOIN models md ON md.id = g.model_id ORDER BY g.id)")"
check "A/B: the server was sent both" "0.8|1.5" \
	"$(q "$tmp/serve.db" "SELECT group_concat(round(temp, 2), '|') FROM (SELECT temp FROM (SELECT id, temp FROM generations ORDER BY id DESC LIMIT 2) ORDER BY id)")"
check "A/B: the preference" "b" "$(q "$tmp/ab.db" "SELECT pick FROM preferences")"
"$NATTER_BIN" export --db "$tmp/ab.db" --format dpo --include-incomplete -o "$tmp/ab.jsonl" 2>"$tmp/abx.err"
check "A/B: exported as a pair, B chosen" "1 True" "$("$PY" - "$tmp/ab.jsonl" "$tmp/ab.db" <<'EOF'
import json, sqlite3, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
g = [r[0] for r in sqlite3.connect(sys.argv[2]).execute("SELECT content FROM generations ORDER BY id")]
print(len(lines), len(lines) == 1 and lines[0]["chosen"][-1]["content"] == g[1] and lines[0]["rejected"][-1]["content"] == g[0])
EOF
)"

# --- 2. Recorded streams of the engines, replayed ---
REMOTE_TEST_KEY=$key "$PY" "$NATTER_SRCDIR/tests/remote-server.py" --dir "$D" --portfile "$tmp/port" --log "$tmp/replay.log" &
pids="$pids $!"
have_port() { [ -s "$tmp/port" ]; }
until_ok have_port && ok || { bad "the replay server did not start"; exit 1; }
R=$(cat "$tmp/port")
URL="http://127.0.0.1:$R"
export OPENAI_API_KEY="$key"

# run NAME INPUT [ARGS...]: one chat --plain session with fixture NAME; $tmp/NAME.out, .err, .db
run() {
	name=$1 input=$2
	shift 2
	printf '%s\n' "$input" | "$NATTER_BIN" chat --plain --remote "$URL" -m "$name" --db "$tmp/$name.db" \
		--connect-timeout 5 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	echo $? >"$tmp/$name.rc"
}
# expect_text NAME [CUT [PART]]: the reply the fixture carries (its content deltas; PART
# "reasoning": its reasoning_content deltas), computed from the fixture itself; CUT: only the
# events before that byte.
expect_text() {
	"$PY" - "$D/$1.sse" "${2:-}" "${3:-answer}" <<'EOF'
import json, sys
raw = open(sys.argv[1], "rb").read()
head, _, body = raw.partition(b"\n\n")
if sys.argv[2]:
    body = body[:int(sys.argv[2])]
    body = body[:body.rfind(b"\n\n") + 2]
text, reasoning = "", ""
for ev in body.replace(b"\r\n", b"\n").split(b"\n\n"):
    data = [l[5:].lstrip(b" ") for l in ev.split(b"\n") if l.startswith(b"data:")]
    if not data or data[0] == b"[DONE]":
        continue
    try:
        d = json.loads(b"\n".join(data))
    except ValueError:
        break
    if "error" in d or d.get("object") == "error":
        break
    for c in d.get("choices", []):
        delta = c.get("delta", {})
        r, t = delta.get("reasoning_content"), delta.get("content")
        reasoning += r or ""
        text += t or ""
sys.stdout.write(reasoning if sys.argv[3] == "reasoning" else text)
EOF
}
# stored NAME: the last generation's end and content, "end|content".
stored() { q "$tmp/$1.db" "SELECT end_reason || '|' || content FROM generations ORDER BY id DESC LIMIT 1"; }
user_kept() { check "$1: the user's message is in the history" "$2" "$(q "$tmp/$1.db" "SELECT count(*) FROM messages WHERE role = 'user'")"; }

# The engines' streams: each reply whole, as the history records it, with the server's counts.
# How it ended, a stop string sent: vLLM's stop_reason null and TGI's eos_token say the model
# ended its turn; the others' "stop" does not tell that from a stop string, and is stored so.
for f in openai vllm llama-server ollama tgi keepalive; do
	run "$f" "Say something" --stop NEVER-SEEN
	check "$f: status" 0 "$(cat "$tmp/$f.rc")"
	want=$(expect_text "$f")
	[ -n "$want" ] && ok || bad "$f: the fixture holds no text"
	check "$f: printed" "$want" "$(cat "$tmp/$f.out")"
	case $f in vllm | tgi) end=finished ;; *) end=finished-or-stop-string ;; esac
	check "$f: stored" "$end|$want" "$(stored "$f")"
	# The reply is the model's the server named in it (OpenAI: the dated snapshot of an alias);
	# the conversation was begun with the one asked for.
	named=$(grep -o '"model":"[^"]*"' "$D/$f.sse" | head -1 | cut -d'"' -f4)
	check "$f: recorded as the model the server named" "remote|$URL/v1|$named" "$(q "$tmp/$f.db" "SELECT kind, endpoint,
		file_name FROM models WHERE id = (SELECT model_id FROM generations ORDER BY id DESC LIMIT 1)")"
	check "$f: the conversation's model, as asked" "$f" "$(q "$tmp/$f.db" "SELECT file_name FROM models WHERE id =
		(SELECT model_id FROM conversations ORDER BY id DESC LIMIT 1)")"
done
check "openai: usage tokens" "12 19" "$(q "$tmp/openai.db" "SELECT n_gen || ' ' || prompt_tokens FROM generations")"
check "vllm: usage tokens" "5 24" "$(q "$tmp/vllm.db" "SELECT n_gen || ' ' || prompt_tokens FROM generations")"
check "llama-server: usage and cache" "6 20 12 8" "$(q "$tmp/llama-server.db" "SELECT n_gen || ' ' || prompt_tokens || ' ' || n_reused || ' ' || n_prompt FROM generations")"
check "llama-server: its own timings" "100.0 197.5" \
	"$(q "$tmp/llama-server.db" "SELECT printf('%.1f %.1f', gen_tps, prompt_tps) FROM generations")"
check "ollama: usage tokens" "6 30" "$(q "$tmp/ollama.db" "SELECT n_gen || ' ' || prompt_tokens FROM generations")"
# Ollama's OpenAI API drops top_k, min_p, repeat_penalty and chat_template_kwargs without a word:
# known by its fingerprint, the reply is stored without them (they were stored as used), they
# are not sent again, and /think is said not to reach it.
rm -f "$tmp/ollama.db"
run ollama "/think on
First
Second"
check "ollama: the extras and think stored as not used" "0.8||||default" "$(q "$tmp/ollama.db" "SELECT
	group_concat(printf('%.1f', temp) || '|' || COALESCE(top_k, '') || '|' || COALESCE(min_p, '') || '|' ||
	COALESCE(repeat_penalty, '') || '|' || COALESCE(think, ''), ' ') FROM (SELECT * FROM generations ORDER BY id
	LIMIT 1)")"
check "ollama: every reply so" "2" "$(q "$tmp/ollama.db" "SELECT count(*) FROM generations WHERE top_k IS NULL AND
	min_p IS NULL AND repeat_penalty IS NULL AND think = 'default'")"
check "ollama: sent once, then not" "True True|False False" "$("$PY" -c 'import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("model") == "ollama"][-2:]
print("|".join("%s %s" % ("top_k" in x["fields"], "chat_template_kwargs" in x["fields"]) for x in e))' "$tmp/replay.log")"
has "ollama: said" "$tmp/ollama.err" "the server is Ollama, which ignores top_k, min_p and repeat_penalty here"
has "ollama: /think said" "$tmp/ollama.err" "the server is Ollama, which ignores chat_template_kwargs"
# TGI's stream here reports no counts: the pieces are not tokens, the
# prompt's length is not known, and both are stored as such (NULL).
check "tgi: no counts, none stored" "1 1" \
	"$(q "$tmp/tgi.db" "SELECT (n_gen IS NULL) || ' ' || (prompt_tokens IS NULL) FROM generations")"
check "keepalive: usage" "4" "$(q "$tmp/keepalive.db" "SELECT n_gen FROM generations")"
# With no stop string sent, OpenAI's "stop" can only be the model's own end.
run openai "Say something"
check "openai, no stop string: stored" "finished|$(expect_text openai)" "$(stored openai)"
run llama-server "Stats please
/stats"
has "llama-server: /stats shows its rates" "$tmp/llama-server.out" "reply: 6 tokens, 100.0 tok/s"
has "llama-server: /stats shows the cache" "$tmp/llama-server.out" "prompt: 8 new tokens (12 reused from the cache), 197.5 tok/s"
run tgi "Stats please
/stats"
has "tgi: counted pieces said so" "$tmp/tgi.out" "reply: 3 pieces (the server reported no token count)"
# A server's reasoning (vLLM's reasoning_content) is the reply's reasoning, kept apart from its
# answer as a model's in this process is: printed marked off, stored apart, fed back as the
# answer alone, exported only with --reasoning keep.  It passes through the session's tags,
# whichever they are; the server's usage counts no reasoning tokens, so none are recorded.
for tags in default "<r> </r>"; do
	set -- "Say something
Go on
/stats"
	[ "$tags" = default ] || set -- "$@" --think-tags "$tags"
	rm -f "$tmp/vllm-reasoning.db"
	run vllm-reasoning "$@"
	check "vllm-reasoning ($tags): status" 0 "$(cat "$tmp/vllm-reasoning.rc")"
	want_r=$(expect_text vllm-reasoning "" reasoning)
	want_a=$(expect_text vllm-reasoning)
	[ -n "$want_r" ] && [ -n "$want_a" ] && ok || bad "vllm-reasoning: the fixture holds no reasoning or no answer"
	has "vllm-reasoning ($tags): printed apart" "$tmp/vllm-reasoning.out" "[reasoning]
| $want_r
[answer]
$want_a"
	check "vllm-reasoning ($tags): stored apart" "finished|$want_a|$want_r|NULL|8" \
		"$(q "$tmp/vllm-reasoning.db" "SELECT end_reason || '|' || content || '|' || reasoning || '|' ||
			COALESCE(n_reasoning, 'NULL') || '|' || n_gen FROM generations ORDER BY id LIMIT 1")"
	check "vllm-reasoning ($tags): the message is the answer" "$want_a" \
		"$(q "$tmp/vllm-reasoning.db" "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id LIMIT 1")"
	has "vllm-reasoning ($tags): /stats counts its pieces" "$tmp/vllm-reasoning.out" \
		"reasoning: 2 pieces (the server reported no count of its tokens)"
done
"$PY" - "$tmp/replay.log" >"$tmp/r-sent.out" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("model") == "vllm-reasoning" and len(e["messages"]) > 1:
        print(e["messages"][1])
EOF
check "vllm-reasoning: the next request has the answer alone" "assistant:$want_a
assistant:$want_a" "$(cat "$tmp/r-sent.out")"
g=$(q "$tmp/vllm-reasoning.db" "SELECT id FROM generations ORDER BY id LIMIT 1")
"$NATTER_BIN" rate --db "$tmp/vllm-reasoning.db" "$g" up >/dev/null 2>&1
check "vllm-reasoning: rated" 0 $?
"$NATTER_BIN" export --db "$tmp/vllm-reasoning.db" --format sft -o "$tmp/r-drop.jsonl" 2>/dev/null
"$NATTER_BIN" export --db "$tmp/vllm-reasoning.db" --format sft --reasoning keep -o "$tmp/r-keep.jsonl" 2>/dev/null
check "vllm-reasoning: export drops the reasoning" "$want_a" "$("$PY" -c '
import json, sys
print(json.loads(open(sys.argv[1]).readline())["messages"][-1]["content"])' "$tmp/r-drop.jsonl")"
check "vllm-reasoning: export --reasoning keep" "<think>
$want_r
</think>

$want_a" "$("$PY" -c '
import json, sys
print(json.loads(open(sys.argv[1]).readline())["messages"][-1]["content"])' "$tmp/r-keep.jsonl")"
# A server whose usage counts the reasoning's tokens (completion_tokens_details.reasoning_tokens).
run reasoning-usage "Think first
/stats"
check "reasoning-usage: the server's count recorded" "$(expect_text reasoning-usage)|$(expect_text reasoning-usage "" reasoning)|11|14" \
	"$(q "$tmp/reasoning-usage.db" "SELECT content || '|' || reasoning || '|' || n_reasoning || '|' || n_gen FROM generations")"
has "reasoning-usage: /stats" "$tmp/reasoning-usage.out" "reasoning: 11 tokens, answer: 3 tokens"

# What natter sent: the model, the messages, the fields; the key as a bearer token.
"$PY" - "$tmp/replay.log" >"$tmp/sent.out" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("model") == "vllm":
        print(e["auth"], e["stream"], e["stream_options"], e["messages"], "top_k" in e, "repetition_penalty" in e,
              e["stop"], isinstance(e.get("seed"), int))
        break
EOF
check "the request vllm got" "ok True {'include_usage': True} ['user:Say something'] True True ['NEVER-SEEN'] True" "$(cat "$tmp/sent.out")"

# A stop string the server matched (vLLM names it).
run vllm-stop "Two words" --stop END
check "vllm-stop: ended at the stop string" "stop-string|Two words" "$(stored vllm-stop)"
# A stop string longer than the 63 bytes natter keeps of the field: matched by its start.
run vllm-longstop "Two words" --stop END-OF-A-VERY-LONG-STOP-STRING-THAT-A-SERVER-NAMES-BACK-WHOLE-0123456789
check "vllm-longstop: ended at the long stop string" "stop-string|Two words" "$(stored vllm-longstop)"

# Failures in the middle of a reply: the part that came is kept, marked as cut.
run error-midstream "Go on"
has "error-midstream: message" "$tmp/error-midstream.err" "the server reported an error in the middle of the reply: the KV cache ran out of slots"
check "error-midstream: kept" "error|Half a thought" "$(stored error-midstream)"
# llama-server's own form: an "error: {...}" line, the bare error object.
run error-line "Go on"
has "error-line: message" "$tmp/error-line.err" "the server reported an error in the middle of the reply: the slot's KV cache ran out"
check "error-line: kept" "error|Half a" "$(stored error-line)"
run vllm-error-flat "Go on"
has "vllm-error-flat: message" "$tmp/vllm-error-flat.err" "the server reported an error in the middle of the reply: Internal server error: CUDA out of memory"
check "vllm-error-flat: kept" "error|Once" "$(stored vllm-error-flat)"
run cut "Go on"
has "cut: message" "$tmp/cut.err" "the reply broke off: the connection to 127.0.0.1:$R closed in the middle"
check "cut: kept" "error|$(expect_text cut 520)" "$(stored cut)"
check "cut: the fixture was cut where it says" "Rain on tin" "$(expect_text cut 520)"
# A connection that drops after the reply is whole (after [DONE], or after the chunk with its
# finish_reason) cut nothing: the reply is stored as finished, and no error is said.
for f in vllm-done-cut vllm-finish-cut; do
	run "$f" "Go on"
	check "$f: status" 0 "$(cat "$tmp/$f.rc")"
	check "$f: stored as finished" "finished|$(expect_text vllm)" "$(stored "$f")"
	check "$f: no error said" "" "$(cat "$tmp/$f.err")"
done
# [DONE] with the stream left open: the reply is whole there.  (Before, it waited for the read
# timeout; 60 s here is only how long a hang may take to fail the test.)
printf 'Go on\n' | timeout 60 "$NATTER_BIN" chat --plain --remote "$URL" -m open-after-done --db "$tmp/open-after-done.db" \
	--read-timeout 600 >"$tmp/open-after-done.out" 2>"$tmp/open-after-done.err"
check "open-after-done: status" 0 $?
check "open-after-done: stored as finished" "finished|Done here." "$(stored open-after-done)"
check "open-after-done: no error said" "" "$(cat "$tmp/open-after-done.err")"
# A \u0000 in a reply's text: the rest of the chunk kept, the NUL as U+FFFD; a typed "\u0000"
# (an escaped backslash) stays as typed.
run nul "Go on"
check "nul: stored whole" "$(printf 'finished|before\357\277\275after and \\u0000 typed')" "$(stored nul)"
check "vllm-done-cut: the usage that came" "5 24" "$(q "$tmp/vllm-done-cut.db" "SELECT n_gen || ' ' || prompt_tokens FROM generations")"
# A finish_reason on an early chunk, more content after it, then the drop: cut, not whole.
run webui-early-finish "Go on"
cut=$(sed -n 's/^cut-after: //p' "$D/webui-early-finish.sse")
check "webui-early-finish: kept as cut" "error|$(expect_text webui-early-finish "$cut")" "$(stored webui-early-finish)"
check "webui-early-finish: the fixture was cut where it says" "Think again" "$(expect_text webui-early-finish "$cut")"
has "webui-early-finish: message" "$tmp/webui-early-finish.err" "the reply broke off: the connection to 127.0.0.1:$R closed in the middle"
# The same, its body ending cleanly (framing by the connection's close): still not whole.
run webui-early-finish-close "Go on"
check "webui-early-finish-close: kept as cut" "error|Think again" "$(stored webui-early-finish-close)"
has "webui-early-finish-close: message" "$tmp/webui-early-finish-close.err" "the stream ended before the reply did"
run ended-early "Go on"
has "ended-early: message" "$tmp/ended-early.err" "the stream ended before the reply did (no finish_reason, no [DONE])"
check "ended-early: kept" "error|Almost there" "$(stored ended-early)"
run malformed "Go on"
has "malformed: message" "$tmp/malformed.err" "the server sent something that is not an OpenAI stream event"
check "malformed: kept" "error|Broken" "$(stored malformed)"
run html "Go on"
has "html: message" "$tmp/html.err" "error: the server answered with text/html; charset=utf-8, not an event stream: is $URL/v1 an OpenAI-compatible API?"
check "html: no reply, the message kept" "0|1" "$(q "$tmp/html.db" "SELECT (SELECT count(*) FROM generations), (SELECT count(*) FROM messages WHERE role = 'user')")"
run stall "Go on" --read-timeout 1
has "stall: message" "$tmp/stall.err" "the reply broke off: the server sent nothing for 1 s (--read-timeout)"
check "stall: kept" "error|Waiting" "$(stored stall)"
for f in error-midstream error-line cut ended-early malformed stall; do
	check "$f: status" 0 "$(cat "$tmp/$f.rc")"
	has "$f: told the reply is kept" "$tmp/$f.err" "what arrived is kept, marked as cut"
	check "$f: said once that it broke off" 1 "$(grep -o "the reply broke off" "$tmp/$f.err" | wc -l)"
	user_kept "$f" 1
done

# Failures before any reply: the message, the user's message kept (in the history too), no reply.
run ratelimit "Hello"
has "429: message" "$tmp/ratelimit.err" "error: the server is limiting requests (429 Too Many Requests: Rate limit reached for gpt-4o"
has "429: Retry-After" "$tmp/ratelimit.err" "it asks to wait 17 s before the next request"
run notfound "Hello"
has "404: message" "$tmp/notfound.err" "error: the server has no model 'notfound' (404: The model \`notfound\` does not exist); natter models --remote $URL/v1 lists what it offers"
run unavailable "Hello"
has "503: message" "$tmp/unavailable.err" "error: the server failed (503 Service Unavailable: Loading model)"
OPENAI_API_KEY="sk-wrong-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" run unauthorized "Hello"
has "401: message" "$tmp/unauthorized.err" "error: the server refused the API key from \$OPENAI_API_KEY (401 Unauthorized: Incorrect API key provided: [the API key]"
grep -q "sk-wrong" "$tmp/unauthorized.err" "$tmp/unauthorized.out" && bad "401: the key the server repeated was shown" || ok
for f in ratelimit notfound unavailable unauthorized; do
	check "$f: status" 0 "$(cat "$tmp/$f.rc")"
	has "$f: the message stays" "$tmp/$f.err" "your message stays in the conversation; /regen sends it again"
	user_kept "$f" 1
	check "$f: no reply stored" 0 "$(q "$tmp/$f.db" "SELECT count(*) FROM generations")"
done
# Without a key, a server that wants one says so, and how to give it.
printf 'Hello\n' | env -u OPENAI_API_KEY "$NATTER_BIN" chat --plain --remote "$URL" -m keyed --db "$tmp/nokey.db" \
	>"$tmp/nokey.out" 2>"$tmp/nokey.err"
has "401 without a key" "$tmp/nokey.err" "the server wants an API key (401 Unauthorized: Incorrect API key provided: . You can find your API key at https://platform.openai.com/account/api-keys); none was sent: set it in \$OPENAI_API_KEY"
run keyed "Hello"
check "keyed: the right key" "finished|Key accepted." "$(stored keyed)"
# A key longer than any fixed buffer (a JWT runs to kilobytes) is sent whole (it was cut at
# 496 bytes and refused); a model list over 1 MiB (a hosted catalogue) is read whole.
long="sk-$(od -An -N1000 -tx1 /dev/urandom | tr -d ' \n')"
REMOTE_TEST_KEY=$long "$PY" "$NATTER_SRCDIR/tests/remote-server.py" --dir "$D" --portfile "$tmp/lport" \
	--log "$tmp/long.log" --pad-models 20000 &
pids="$pids $!"
have_lport() { [ -s "$tmp/lport" ]; }
until_ok have_lport || bad "the second replay server did not start"
printf 'Hello\n' | OPENAI_API_KEY=$long "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$(cat "$tmp/lport")" -m keyed \
	--db "$tmp/longkey.db" >"$tmp/longkey.out" 2>"$tmp/longkey.err"
check "a key of ${#long} characters: accepted" "finished|Key accepted." "$(q "$tmp/longkey.db" "SELECT end_reason || '|' ||
	content FROM generations")"
OPENAI_API_KEY=$long "$NATTER_BIN" models --remote "http://127.0.0.1:$(cat "$tmp/lport")" >"$tmp/bigmodels.out" 2>&1
check "a model list of 1.6 MB: status" 0 $?
check "a model list of 1.6 MB: every model" 20000 "$(grep -c '^pad-' "$tmp/bigmodels.out")"
grep -q "$long" "$tmp/longkey.out" "$tmp/longkey.err" "$tmp/bigmodels.out" && bad "the long key was printed" || ok
# A retry after a failure: /regen answers the message that stayed.
printf 'Hello\n/regen\n' | "$NATTER_BIN" chat --plain --remote "$URL" -m ratelimit --db "$tmp/rl2.db" >/dev/null 2>"$tmp/rl2.err"
check "a failed /regen keeps one user message" "1|0" "$(q "$tmp/rl2.db" "SELECT (SELECT count(*) FROM messages WHERE role = 'user'), (SELECT count(*) FROM generations)")"
check "and says why twice" 2 "$(grep -c "429 Too Many Requests" "$tmp/rl2.err")"

# A seed past 2^53 is sent as its digits (a double's 15 were sent: 9.00719925474099e+15), and
# the seed recorded is the seed sent.
run openai "Hello" --seed 9007199254740993
check "a large seed: sent exactly" "9007199254740993" "$("$PY" -c 'import json, sys
print([json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("model") == "openai"][-1]["seed"])' "$tmp/replay.log")"
check "a large seed: recorded" "9007199254740993" "$(q "$tmp/openai.db" "SELECT seed FROM generations ORDER BY id DESC LIMIT 1")"

# A server that refuses the extra fields: asked again without them, and not sent them again.
run strict "First
Second
/params"
check "strict: both answered" "finished|Plain fields only.|finished|Plain fields only." \
	"$(q "$tmp/strict.db" "SELECT group_concat(end_reason || '|' || content, '|') FROM (SELECT * FROM generations ORDER BY id)")"
has "strict: told" "$tmp/strict.err" "the server refuses top_k: top_k, min_p and repeat_penalty are not sent to it from now on"
has "strict: shown as not sent" "$tmp/strict.out" "top_k 40 (not sent), top_p 0.95, min_p 0.05 (not sent), repeat_penalty 1 (not sent)"
"$PY" - "$tmp/replay.log" >"$tmp/strict.sent" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("model") == "strict":
        print(e["outcome"], any(k in e["fields"] for k in ("top_k", "min_p", "repeat_penalty", "repetition_penalty")), e["messages"][-1])
EOF
check "strict: the requests" "refused True user:First
sent False user:First
sent False user:Second" "$(cat "$tmp/strict.sent")"
# A conversation longer than the server's context, refused each server's way (OpenAI's code,
# llama-server's type, vLLM's words; the fixtures refuse a request of more than 3 messages): the
# oldest turn is dropped and the request sent again, said once as with a local model; the reply
# arrives, and what is stored as its prompt is the request that made it.
for f in overflow-openai overflow-llama-server overflow-llama-stream overflow-vllm; do
	run "$f" "First
Second
Third"
	check "$f: status" 0 "$(cat "$tmp/$f.rc")"
	check "$f: every reply" "It fits.|It fits.|It fits." \
		"$(q "$tmp/$f.db" "SELECT group_concat(content, '|') FROM (SELECT content FROM generations ORDER BY id)")"
	check "$f: told once" "[natter: dropped the 2 oldest messages to fit the context]" "$(grep 'dropped the' "$tmp/$f.err")"
	check "$f: the requests" "sent user:First
sent user:First,assistant:It fits.,user:Second
refused user:First,assistant:It fits.,user:Second,assistant:It fits.,user:Third
sent user:Second,assistant:It fits.,user:Third" "$("$PY" - "$tmp/replay.log" "$f" <<'EOF2'
import json, sys
for e in map(json.loads, open(sys.argv[1])):
    if e.get("model") == sys.argv[2]:
        print(e["outcome"], ",".join(e["messages"]))
EOF2
)"
	check "$f: the prompt recorded is the one sent" "2|user:Second|assistant:It fits.|user:Third|True" \
		"$("$PY" - "$tmp/$f.db" <<'EOF2'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
nd, pm, pt = db.execute("SELECT n_dropped, prompt_messages, prompt_text FROM generations ORDER BY id DESC LIMIT 1").fetchone()
msgs = [m["role"] + ":" + m["content"] for m in json.loads(pm)]
sent = [m["content"] for m in json.loads(pt)["messages"]]
print("|".join([str(nd)] + msgs + [str(sent == ["Second", "It fits.", "Third"])]))
EOF2
)"
done
# Even the last message alone refused: an error that says so, the message withdrawn from the
# conversation (not said to stay), no reply.
run overflow-alone "Hello"
check "overflow-alone: status" 0 "$(cat "$tmp/overflow-alone.rc")"
has "overflow-alone: message" "$tmp/overflow-alone.err" "error: the message alone is too long: the request is longer than the server's context (400 Bad Request: This model's maximum context length is 128000 tokens"
check "overflow-alone: not said to stay" "0" "$(grep -c 'stays in the conversation' "$tmp/overflow-alone.err")"
# Saved before the server could refuse it, the message is taken back from the history too, and
# the conversation it began with it: a resume does not find it.
check "overflow-alone: no reply stored" "0" "$(q "$tmp/overflow-alone.db" "SELECT count(*) FROM generations")"
check "overflow-alone: the message taken back" "0 0" \
	"$(q "$tmp/overflow-alone.db" "SELECT (SELECT count(*) FROM messages) || ' ' || (SELECT count(*) FROM conversations)")"
# Amid a conversation: the turns before it stay, the leaf goes back to the last reply, and the
# next message follows that reply.
run overflow-long "Hi
This message is far too long for the server
Again"
check "overflow-long: status" 0 "$(cat "$tmp/overflow-long.rc")"
has "overflow-long: message" "$tmp/overflow-long.err" "error: the message alone is too long"
check "overflow-long: the conversation kept" "user:Hi:-|assistant:It fits.:Hi|user:Again:It fits.|assistant:It fits.:Again" \
	"$(q "$tmp/overflow-long.db" "SELECT group_concat(m.role || ':' || m.content || ':' || COALESCE(p.content, '-'), '|') FROM (SELECT * FROM messages ORDER BY id) m LEFT JOIN messages p ON p.id = m.parent_id")"
check "overflow-long: the leaf" "Again It fits." \
	"$(q "$tmp/overflow-long.db" "SELECT p.content || ' ' || m.content FROM conversations c JOIN messages m ON m.id = c.leaf_id JOIN messages p ON p.id = m.parent_id")"
# Sent again (/regen) after --resume: a message the first server could not answer (429) stays;
# resumed, the second refuses it even alone, and it leaves the history then.
printf 'This message is far too long for the server\n' | "$NATTER_BIN" chat --plain --remote "$URL" -m ratelimit \
	--db "$tmp/regen-long.db" --connect-timeout 5 >/dev/null 2>&1
check "regen-long: kept after the 429" "1" \
	"$(q "$tmp/regen-long.db" "SELECT count(*) FROM messages WHERE content LIKE 'This message%'")"
printf '/regen\n' | "$NATTER_BIN" chat --plain --remote "$URL" -m overflow-long --db "$tmp/regen-long.db" \
	--resume "$(q "$tmp/regen-long.db" "SELECT max(id) FROM conversations")" --connect-timeout 5 \
	>"$tmp/regen-long.out" 2>"$tmp/regen-long.err"
has "regen-long: refused alone" "$tmp/regen-long.err" "error: the message alone is too long"
check "regen-long: taken back on /regen" "0" \
	"$(q "$tmp/regen-long.db" "SELECT count(*) FROM messages WHERE content LIKE 'This message%'")"
check "overflow-alone: asked once" "refused" "$("$PY" -c '
import json, sys
print(" ".join(e["outcome"] for e in map(json.loads, open(sys.argv[1])) if e.get("model") == "overflow-alone"))' "$tmp/replay.log")"
# /think over a remote server: sent as chat_template_kwargs from the next request (and recorded in
# the stored request); a server that refuses it is asked again without it, and not sent it again.
rm -f "$tmp/vllm-reasoning.db"
run vllm-reasoning "Hello
/think
/think off
Again
/think on
Once more"
has "/think: the server decides" "$tmp/vllm-reasoning.out" "enable_thinking: the template's default (the server's template decides what it does)"
has "/think off: sent" "$tmp/vllm-reasoning.out" "enable_thinking = false from the next reply (sent to the server as chat_template_kwargs)"
check "/think: the requests" "None|{'enable_thinking': False}|{'enable_thinking': True}" "$("$PY" -c '
import json, sys
sent = [e for e in map(json.loads, open(sys.argv[1])) if e.get("model") == "vllm-reasoning"][-3:]   # this run'"'"'s
print("|".join(str(e.get("chat_template_kwargs")) for e in sent))' "$tmp/replay.log")"
check "/think: the stored requests" "0|1|1" "$(q "$tmp/vllm-reasoning.db" "SELECT group_concat(instr(prompt_text, '\"chat_template_kwargs\"') > 0, '|') FROM (SELECT prompt_text FROM generations ORDER BY id)")"
run no-kwargs "/think off
First
Second
/think
/think on
Third"
check "no-kwargs: all answered" "No switches here.|No switches here.|No switches here." "$(q "$tmp/no-kwargs.db" "SELECT group_concat(content, '|') FROM (SELECT content FROM generations ORDER BY id)")"
# The switch reached none of them: each is recorded as made under the server's default.
check "no-kwargs: no switch recorded" "default|default|default" "$(q "$tmp/no-kwargs.db" "SELECT group_concat(coalesce(think, 'NULL'), '|') FROM (SELECT think FROM generations ORDER BY id)")"
has "no-kwargs: /think says it is not sent" "$tmp/no-kwargs.out" "enable_thinking: false (not sent: the server refuses chat_template_kwargs)"
has "no-kwargs: /think on refused" "$tmp/no-kwargs.err" "/think: the server refuses chat_template_kwargs, which would carry it; nothing changed"
has "no-kwargs: told" "$tmp/no-kwargs.err" "the server refuses chat_template_kwargs: /think is not sent to it from now on"
check "no-kwargs: the requests" "refused True|sent False|sent False|sent False" "$("$PY" -c '
import json, sys
print("|".join("%s %s" % (e["outcome"], "chat_template_kwargs" in e["fields"]) for e in map(json.loads, open(sys.argv[1])) if e.get("model") == "no-kwargs"))' "$tmp/replay.log")"
run no-stream-options "Hello
/stats"
check "no-stream-options: answered" "finished|No usage here." "$(stored no-stream-options)"
has "no-stream-options: told" "$tmp/no-stream-options.err" "the server refuses stream_options"
has "no-stream-options: counted" "$tmp/no-stream-options.out" "reply: 2 pieces"
run openai "Hello" --remote-extras off
check "--remote-extras off: none sent" "False" "$("$PY" -c '
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("model") == "openai"][-1]
print(any(k in e["fields"] for k in ("top_k", "min_p", "repeat_penalty", "repetition_penalty")))' "$tmp/replay.log")"
# What was not sent is not recorded as the reply's: the server used its own.
check "--remote-extras off: the stored settings" "0.8|0.95|||||||1024" "$(q "$tmp/openai.db" \
	"SELECT printf('%g', temp) || '|' || printf('%g', top_p) || '|' || COALESCE(top_k, '') || '|' || COALESCE(min_p, '') || '|' ||
	COALESCE(repeat_penalty, '') || '|' || COALESCE(presence_penalty, '') || '|' || COALESCE(frequency_penalty, '') || '|' ||
	COALESCE(penalty_last_n, '') || '|' || COALESCE(max_tokens, '') FROM generations ORDER BY id DESC LIMIT 1")"
"$NATTER_BIN" history show "$(q "$tmp/openai.db" "SELECT max(id) FROM conversations")" --db "$tmp/openai.db" \
	>"$tmp/openai-show.out" 2>&1
has "--remote-extras off: history shows them not known" "$tmp/openai-show.out" "temp 0.80 top_p 0.95 top_k ? min_p ?"

# Ctrl-C stops a reply: while it streams (the server sees the client leave), and while the server
# sends nothing at all (no need to wait for the read timeout).
for f in slow stall; do
	printf 'Go on\n' > "$tmp/int.in"
	"$NATTER_BIN" chat --plain --remote "$URL" -m "$f" --db "$tmp/int-$f.db" <"$tmp/int.in" >"$tmp/int-$f.out" \
		2>"$tmp/int-$f.err" &
	np=$!
	started() { grep -q "Waiting\|word2 " "$tmp/int-$f.out" 2>/dev/null; }
	until_ok started && ok || bad "$f: no reply before Ctrl-C: $(cat "$tmp/int-$f.out")"
	kill -INT $np
	gone() { ! kill -0 $np 2>/dev/null; }
	until_ok gone && ok || { bad "$f: Ctrl-C did not stop the reply"; kill $np; }
	wait $np
	check "$f: status after Ctrl-C" 0 $?
	has "$f: told" "$tmp/int-$f.err" "[natter: reply stopped]"
	check "$f: the part kept, marked stopped" "stopped" "$(q "$tmp/int-$f.db" "SELECT end_reason FROM generations")"
done
left() { grep -q '"model": "slow".*"outcome": "client left after' "$tmp/replay.log"; }
until_ok left && ok || bad "the server did not see the client leave: $(grep '"slow"' "$tmp/replay.log")"
# Ctrl-C while natter waits for the next line stops nothing: the read goes on (it was taken for
# the end of input, and the chat ended), and the next reply is whole (it stopped at its first piece).
if [ -r /proc/self/syscall ]; then
	mkfifo "$tmp/idle.fifo"
	"$NATTER_BIN" chat --plain --remote "$URL" -m openai --db "$tmp/idle.db" <"$tmp/idle.fifo" >"$tmp/idle.out" \
		2>"$tmp/idle.err" &
	np=$!
	exec 7>"$tmp/idle.fifo"
	printf 'First\n' >&7
	one() { [ "$(q "$tmp/idle.db" "SELECT count(*) FROM generations" 2>/dev/null)" = 1 ]; }
	# read(2) on standard input (syscall 0, fd 0): waiting for the next line.
	reading() { case $(cat /proc/$np/syscall 2>/dev/null) in "0 0x0 "*) return 0 ;; esac; return 1; }
	until_ok one && until_ok reading && ok || bad "idle: the first reply, then the wait for a line: $(cat "$tmp/idle.err")"
	kill -INT $np
	printf 'Second\n' >&7
	exec 7>&-
	wait $np
	check "idle Ctrl-C: status" 0 $?
	check "idle Ctrl-C: both replies whole" "finished|$(expect_text openai) finished|$(expect_text openai)" \
		"$(q "$tmp/idle.db" "SELECT group_concat(end_reason || '|' || content, ' ') FROM (SELECT * FROM generations ORDER BY id)")"
else
	echo "note: no /proc/PID/syscall here: Ctrl-C at the prompt was not tried"
fi

# No server there; a name that does not resolve; a TLS handshake that fails; URLs refused before
# anything is sent.
free=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
printf 'Hello\n' | "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$free" -m x --db "$tmp/refused.db" \
	>/dev/null 2>"$tmp/refused.err"
has "refused: message" "$tmp/refused.err" "error: cannot connect to 127.0.0.1:$free: connection refused (is the server running, at that address?)"
check "refused: the message kept" 1 "$(q "$tmp/refused.db" "SELECT count(*) FROM messages WHERE role = 'user'")"
# TLS that fails: https:// to a server that speaks plain HTTP (the handshake gets no TLS answer).
printf 'Hello\n' | "$NATTER_BIN" chat --plain --remote "https://127.0.0.1:$R/v1" -m openai --db "$tmp/tls.db" \
	>/dev/null 2>"$tmp/tls.err"
check "tls: status" 0 $?
has "tls: message" "$tmp/tls.err" "error: the secure connection to 127.0.0.1:$R failed: "
has "tls: the message stays" "$tmp/tls.err" "your message stays in the conversation; /regen sends it again"
check "tls: the message kept, no reply" "1|0" "$(q "$tmp/tls.db" "SELECT (SELECT count(*) FROM messages WHERE role = 'user'), (SELECT count(*) FROM generations)")"
# A server that never accepts the connection (its listen queue is full): the connect timeout.
"$PY" - "$tmp/bport" <<'EOF' &
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
port = s.getsockname()[1]
held = []
for i in range(8):   # fill the queue; the kernel drops later connection attempts
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    held.append(c)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)   # held until the test kills it
EOF
pids="$pids $!"
have_bport() { [ -s "$tmp/bport" ]; }
until_ok have_bport && ok || bad "the full listener did not start"
B=$(cat "$tmp/bport")
printf 'Hello\n' | "$NATTER_BIN" chat --plain --remote "http://127.0.0.1:$B" -m x --connect-timeout 1 --db "$tmp/ctimeout.db" \
	>/dev/null 2>"$tmp/ctimeout.err"
check "connect timeout: status" 0 $?
has "connect timeout: message" "$tmp/ctimeout.err" "error: no answer from 127.0.0.1:$B within the connect timeout (--connect-timeout)"
check "connect timeout: the message kept, no reply" "1|0" \
	"$(q "$tmp/ctimeout.db" "SELECT (SELECT count(*) FROM messages WHERE role = 'user'), (SELECT count(*) FROM generations)")"
# A certificate natter does not trust: a loopback HTTPS server with a self-signed certificate made
# here.  Refused before anything is sent, with what it means and what to do; trusted once
# $CURL_CA_BUNDLE names it; refused again for a host name it does not carry.
if command -v openssl >/dev/null 2>&1 &&
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/tls.key" -out "$tmp/tls.crt" -days 2 \
		-subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1" >"$tmp/openssl.log" 2>&1; then
	"$PY" "$NATTER_SRCDIR/tests/remote-server.py" --dir "$D" --portfile "$tmp/tport" --log "$tmp/tls.log" \
		--tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key" &
	pids="$pids $!"
	have_tport() { [ -s "$tmp/tport" ]; }
	until_ok have_tport && ok || { bad "the HTTPS replay server did not start"; exit 1; }
	T=$(cat "$tmp/tport")
	printf 'Hello\n' | "$NATTER_BIN" chat --plain --remote "https://127.0.0.1:$T" -m openai --db "$tmp/untrusted.db" \
		>"$tmp/untrusted.out" 2>"$tmp/untrusted.err"
	check "untrusted certificate: status" 0 $?
	has "untrusted certificate: message" "$tmp/untrusted.err" "error: the server 127.0.0.1:$T is not trusted: its certificate is not signed by an authority this system trusts, or does not name that host (SSL certificate problem: self-signed certificate); nothing was sent.  If it has a certificate of its own, name the file that holds it (or its authority's) in \$CURL_CA_BUNDLE"
	has "untrusted certificate: the message stays" "$tmp/untrusted.err" "your message stays in the conversation; /regen sends it again"
	check "untrusted certificate: the message kept, no reply" "1|0" \
		"$(q "$tmp/untrusted.db" "SELECT (SELECT count(*) FROM messages WHERE role = 'user'), (SELECT count(*) FROM generations)")"
	check "untrusted certificate: no request reached the server" "0" "$(cat "$tmp/tls.log" 2>/dev/null | wc -l | tr -d ' ')"
	"$NATTER_BIN" models --remote "https://127.0.0.1:$T" >"$tmp/untrusted-m.out" 2>&1
	check "untrusted certificate: models --remote status" 1 $?
	has "untrusted certificate: models --remote message" "$tmp/untrusted-m.out" "the server 127.0.0.1:$T is not trusted"
	HF_ENDPOINT="https://127.0.0.1:$T" "$NATTER_BIN" pull org/x-GGUF --dir "$tmp/pulled" >/dev/null 2>"$tmp/untrusted-p.err"
	check "untrusted certificate: pull status" 1 $?
	has "untrusted certificate: pull message" "$tmp/untrusted-p.err" "https://127.0.0.1:$T/api/models/org/x-GGUF/tree/main?recursive=true is not trusted: its certificate is not signed by an authority this system trusts"
	printf 'Hello\n' | CURL_CA_BUNDLE="$tmp/tls.crt" "$NATTER_BIN" chat --plain --remote "https://127.0.0.1:$T" -m openai \
		--db "$tmp/trusted.db" >"$tmp/trusted.out" 2>"$tmp/trusted.err"
	check "trusted with \$CURL_CA_BUNDLE: status" 0 $?
	check "trusted with \$CURL_CA_BUNDLE: the reply over TLS" "finished|$(expect_text openai)" "$(stored trusted)"
	check "trusted with \$CURL_CA_BUNDLE: the endpoint recorded" "https://127.0.0.1:$T/v1" "$(q "$tmp/trusted.db" "SELECT DISTINCT endpoint FROM models")"
	printf 'Hello\n' | CURL_CA_BUNDLE="$tmp/tls.crt" "$NATTER_BIN" chat --plain --remote "https://localhost:$T" -m openai \
		--no-history >/dev/null 2>"$tmp/wrongname.err"
	has "a certificate for another host name" "$tmp/wrongname.err" "error: the server localhost:$T is not trusted: its certificate is not signed by an authority in \$CURL_CA_BUNDLE ($tmp/tls.crt), or does not name that host (SSL: no alternative certificate subject name matches target host name 'localhost')"
else
	echo "note: openssl could not make a certificate (tools/install-deps.sh installs it); the untrusted-certificate case was not run"
	cat "$tmp/openssl.log" 2>/dev/null | tail -n 2
fi
printf 'Hello\n' | "$NATTER_BIN" chat --plain --remote "http://nosuch.invalid/v1" -m x --connect-timeout 5 \
	--db "$tmp/dns.db" >/dev/null 2>"$tmp/dns.err"
has "dns: message" "$tmp/dns.err" "error: cannot find the server: the host name in http://nosuch.invalid/v1 does not resolve"
"$NATTER_BIN" chat --plain --remote "http://me:$key@127.0.0.1:$R/v1" -m x --no-history </dev/null >/dev/null 2>"$tmp/userinfo.err"
check "a password in the URL: status" 1 $?
has "a password in the URL: refused" "$tmp/userinfo.err" "the URL carries a user name or password; put the API key in an environment variable"
"$NATTER_BIN" chat --plain --remote "ftp://127.0.0.1/v1" -m x --no-history </dev/null >/dev/null 2>"$tmp/ftp.err"
has "ftp: refused" "$tmp/ftp.err" "only http:// and https:// servers are supported"
"$NATTER_BIN" chat --plain --remote "$URL" --api-key-env NATTER_NO_SUCH_VARIABLE -m x </dev/null >/dev/null 2>"$tmp/novar.err"
has "a named variable unset" "$tmp/novar.err" "--api-key-env NATTER_NO_SUCH_VARIABLE: that environment variable is not set or empty"
"$NATTER_BIN" chat --plain --remote "$URL" --no-history </dev/null >/dev/null 2>"$tmp/many.err"
has "several models, none chosen" "$tmp/many.err" "offers"
has "several models, named" "$tmp/many.err" "choose one with --model NAME: cut, ended-early"
"$NATTER_BIN" chat --plain --remote "$URL" --remote-extras maybe -m x </dev/null >/dev/null 2>"$tmp/extras.err"
has "--remote-extras maybe" "$tmp/extras.err" "--remote-extras: 'maybe' is neither on nor off"

# The config file: the server, its model, the key's variable.
mkdir -p "$XDG_CONFIG_HOME/natter"
printf 'remote = %s\nmodel = vllm\napi_key_env = NATTER_REMOTE_KEY\n' "$URL" > "$XDG_CONFIG_HOME/natter/config"
printf 'From the config\n' | NATTER_REMOTE_KEY=$key "$NATTER_BIN" chat --plain --db "$tmp/cfg.db" >"$tmp/cfg.out" 2>"$tmp/cfg.err"
check "config: status" 0 $?
check "config: the server and model" "finished|$(expect_text vllm)" "$(stored cfg)"
check "config: the key from its variable" "ok" "$("$PY" -c '
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if "From the config" in str(json.loads(l).get("messages"))][-1]
print(e["auth"])' "$tmp/replay.log")"
# --remote on the command line: the config file's model is not the server's.
printf 'Hello\n' | NATTER_REMOTE_KEY=$key "$NATTER_BIN" chat --plain --remote "$URL" --no-history >/dev/null 2>"$tmp/cfg2.err"
has "config model not used with --remote" "$tmp/cfg2.err" "choose one with --model NAME"
# -m naming a model file: chatted with here, whatever the config file's server.
printf 'Hello\n' | NATTER_REMOTE_KEY=$key "$NATTER_BIN" chat --plain -m "$M" -n 2 --db "$tmp/local.db" >/dev/null 2>"$tmp/local.err"
check "config server, -m FILE: a local model" "file|1" "$(q "$tmp/local.db" "SELECT md.kind, count(*) FROM generations g JOIN models md ON md.id = g.model_id")"
rm -f "$XDG_CONFIG_HOME/natter/config"

# --- 3. The key: in no database, no output, no log, no config file ---
kill $pids 2>/dev/null
wait 2>/dev/null
pids=
if grep -rqF "$key" "$tmp" "$HOME" 2>/dev/null; then
	bad "the API key appears in: $(grep -rlF "$key" "$tmp")"
else
	ok
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
