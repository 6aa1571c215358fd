#!/bin/sh
# test-serve.sh -- natter serve on loopback, driven by two clients: the official openai npm package
# (when npm can install it) and curl; greedy output against natter generate; bad requests; a client
# that leaves mid-stream; the history; the API key never shown.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
: "${NATTER_SRCDIR:=.}"
F=$NATTER_FIXTURES
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
tmp=$(mktemp -d)
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

for tool in python3 curl; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "SKIP: $tool is needed (tools/install-deps.sh installs it)"
		exit 77
	fi
done
# Debian's python3 (what tools/install-deps.sh installs) when it is there:
# a version manager's shim first in PATH costs a second per call.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
M=$F/models/aidreams260K-f32.gguf
if [ ! -f "$M" ]; then
	echo "SKIP: fixtures not found"
	exit 77
fi
npm_cache=${npm_config_cache:-${HOME:-$tmp}/.npm}
export HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config"
mkdir -p "$HOME"
unset NATTER_DB
key="sk-natter-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export NATTER_TEST_KEY="$key"
# A template that passes the conversation through: the chat's prompt is the
# user's text, as natter generate sees it.
printf '%s' "{% for message in messages %}{{ message['content'] }}{% endfor %}" > "$tmp/raw.jinja"
prompt="I dreamed that"
"$NATTER_BIN" generate -m "$M" -p "$prompt" -n 24 --temp 0 -t 1 > "$tmp/gen.txt"
expect=$("$PY" -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read(); print(t[:-1] if t.endswith("\n") else t, end="")' "$tmp/gen.txt")
[ -n "$expect" ] && ok || bad "natter generate printed nothing"

# start NAME ARGS...: starts a server on a free port, sets $port.
start() {
	name=$1; shift
	# One thread: the model is tiny, and the machine may be busy.
	"$NATTER_BIN" serve -m "$M" --port 0 -t 1 "$@" 2>"$tmp/$name.log" &
	pids="$pids $!"
	i=0
	while ! grep -q "listening on" "$tmp/$name.log" 2>/dev/null && [ $i -lt 300 ]; do
		sleep 0.1; i=$((i + 1))
	done
	port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/v1 .*|\1|p' "$tmp/$name.log")
	[ -n "$port" ] && ok || { bad "$name did not start: $(cat "$tmp/$name.log")"; exit 1; }
}
start main --api-key-env NATTER_TEST_KEY --db "$tmp/main.db" --chat-template "$tmp/raw.jinja" -c 128
P=$port
start slow --api-key-env NATTER_TEST_KEY --db "$tmp/slow.db" --chat-template "$tmp/raw.jinja" -c 128 --token-delay 50
SLOW=$port
grep -q "an API key is required" "$tmp/main.log" && ok || bad "start line: $(cat "$tmp/main.log")"

# req NAME METHOD PATH [BODYFILE] [KEY]: the body into $tmp/NAME, prints the status.
req() {
	k=${5-$key}
	if [ -n "$4" ]; then
		curl -s -o "$tmp/$1" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $k" \
			-H 'Content-Type: application/json' --data-binary "@$4" "http://127.0.0.1:$P$3"
	else
		curl -s -o "$tmp/$1" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $k" "http://127.0.0.1:$P$3"
	fi
}
# jget FILE EXPR: a Python expression over the JSON in FILE, as d.
jget() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1], encoding="utf-8")); print(eval(sys.argv[2]), end="")' "$1" "$2"; }
# body FILE JSON: writes a request body.
body() { printf '%s' "$2" > "$tmp/$1"; }
# sse FILE: the stream's events checked and its text printed (content or text deltas).
sse() {
	"$PY" - "$1" <<'EOF'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
events = [e[len("data: "):] for e in raw.split("\n\n") if e.strip()]
assert all(not e.startswith("data:") for e in events), "an event without data"
assert events[-1] == "[DONE]", "the stream does not end with [DONE]"
text, reasoning, finish, usage = "", "", None, None
for e in events[:-1]:
    d = json.loads(e)
    for c in d["choices"]:
        text += c.get("delta", {}).get("content") or c.get("text") or ""
        reasoning += c.get("delta", {}).get("reasoning_content") or ""
        finish = c.get("finish_reason") or finish
    if d.get("usage"):
        assert d["choices"] == [], "usage in a chunk with choices"
        usage = d["usage"]
print(json.dumps({"text": text, "reasoning": reasoning, "finish": finish, "usage": usage, "n": len(events)}))
EOF
}
esc() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]), end="")' "$1"; }

# --- the openai package, when npm can fetch it ---
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 &&
	timeout 180 npm install --prefix "$tmp/npm" --cache "$npm_cache" --prefer-offline --no-audit --no-fund \
		--fetch-retries=1 --fetch-timeout=30000 --loglevel=error openai@4 >"$tmp/npm.log" 2>&1; then
	before=$(curl -s "http://127.0.0.1:$SLOW/health" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cancelled"])')
	OPENAI_PREFIX="$tmp/npm" PORT=$P SLOW_PORT=$SLOW KEY=$key MODEL=aidreams260K-f32 EXPECT=$expect PROMPT=$prompt \
		node "$NATTER_SRCDIR/tests/serve-openai.mjs" >"$tmp/node.out" 2>&1
	check "openai client status" 0 $?
	n_ok=$(grep -c "^ok " "$tmp/node.out")
	[ "$n_ok" -ge 19 ] && ok || bad "openai client: only $n_ok checks passed"
	grep "^FAIL" "$tmp/node.out" >&2 && bad "openai client checks failed" || ok
	grep -q "^ok abandoned a stream" "$tmp/node.out" || bad "the openai client did not abandon its stream: $(cat "$tmp/node.out")"
	# The server saw the client go and cancelled the generation.
	i=0
	while [ $i -lt 300 ]; do
		now=$(curl -s "http://127.0.0.1:$SLOW/health" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cancelled"])')
		[ "$now" -gt "$before" ] && break
		sleep 0.1; i=$((i + 1))
	done
	[ "$now" -gt "$before" ] && ok || bad "the openai client's abandoned stream was not cancelled: $(cat "$tmp/slow.log")"
else
	echo "note: npm could not install the openai package (no registry?); only the curl client ran"
	sed 's/^/  npm: /' "$tmp/npm.log" 2>/dev/null | tail -n 3
fi

# --- curl: the same requests ---
check "health without a key" 200 "$(req h GET /health "" none)"
check "health says ok" ok "$(jget "$tmp/h" 'd["status"]')"
check "models without a key" 401 "$(req m0 GET /v1/models "" "")"
check "401 error shape" "invalid_request_error invalid_api_key" "$(jget "$tmp/m0" 'd["error"]["type"] + " " + d["error"]["code"]')"
check "models with a wrong key" 401 "$(req m1 GET /v1/models "" wrong)"
check "models" 200 "$(req m2 GET /v1/models)"
check "model id" "list aidreams260K-f32" "$(jget "$tmp/m2" 'd["object"] + " " + d["data"][0]["id"]')"
check "model by id" 200 "$(req m3 GET /v1/models/aidreams260K-f32)"
check "unknown model by id" 404 "$(req m4 GET /v1/models/nope)"
# The model named by the id listed, its file name, or the path given to -m: the same model.
check "model by file name" 200 "$(req m5 GET /v1/models/aidreams260K-f32.gguf)"
for name in aidreams260K-f32.gguf "$M"; do
	body cn "{\"model\": $(esc "$name"), \"prompt\": \"x\", \"max_tokens\": 1}"
	check "a request naming the model as $name" "200 aidreams260K-f32" "$(req rn POST /v1/completions "$tmp/cn") $(jget "$tmp/rn" 'd["model"]')"
done

msgs="[{\"role\": \"user\", \"content\": $(esc "$prompt")}]"
body c1 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24}"
check "chat" 200 "$(req r1 POST /v1/chat/completions "$tmp/c1")"
check "chat equals natter generate" "$expect" "$(jget "$tmp/r1" 'd["choices"][0]["message"]["content"]')"
check "chat finish and usage" "length 24 9" "$(jget "$tmp/r1" 'd["choices"][0]["finish_reason"] + " " + str(d["usage"]["completion_tokens"]) + " " + str(d["usage"]["prompt_tokens"])')"
# The next turn of that conversation reuses the cached prompt and reply.
body c2 "{\"model\": \"aidreams260K-f32\", \"messages\": [{\"role\": \"user\", \"content\": $(esc "$prompt")}, {\"role\": \"assistant\", \"content\": $(esc "$expect")}, {\"role\": \"user\", \"content\": \" Then\"}], \"temperature\": 0, \"max_tokens\": 4}"
check "next turn" 200 "$(req r2 POST /v1/chat/completions "$tmp/c2")"
cached=$(jget "$tmp/r2" 'd["usage"]["prompt_tokens_details"]["cached_tokens"]')
[ "$cached" -ge 33 ] && ok || bad "the next turn reused $cached cached tokens, not the 33 of the previous request"
echo "KV reuse: $cached of $(jget "$tmp/r2" 'd["usage"]["prompt_tokens"]') prompt tokens came from the cache"

body c3 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"stream\": true, \"stream_options\": {\"include_usage\": true}}"
check "chat stream" 200 "$(req r3 POST /v1/chat/completions "$tmp/c3")"
sse "$tmp/r3" > "$tmp/r3.json" 2>"$tmp/r3.err" && ok || bad "chat stream events: $(cat "$tmp/r3.err")"
check "streamed chat equals natter generate" "$expect" "$(jget "$tmp/r3.json" 'd["text"]')"
check "stream finish and usage" "length 24" "$(jget "$tmp/r3.json" 'd["finish"] + " " + str(d["usage"]["completion_tokens"])')"
body c4 "{\"model\": \"aidreams260K-f32\", \"prompt\": $(esc "$prompt"), \"temperature\": 0, \"max_tokens\": 24}"
check "completion" 200 "$(req r4 POST /v1/completions "$tmp/c4")"
check "completion equals natter generate" "$expect" "$(jget "$tmp/r4" 'd["choices"][0]["text"]')"
body c5 "{\"model\": \"aidreams260K-f32\", \"prompt\": $(esc "$prompt"), \"temperature\": 0, \"max_tokens\": 24, \"stream\": true}"
check "completion stream" 200 "$(req r5 POST /v1/completions "$tmp/c5")"
sse "$tmp/r5" > "$tmp/r5.json" && ok || bad "completion stream events"
check "streamed completion equals natter generate" "$expect" "$(jget "$tmp/r5.json" 'd["text"]')"
# A completion's prompt is the caller's text as it is: control tokens written
# in it are read as such (as llama-server reads them), where a chat
# message's are text.
body c5s "{\"model\": \"aidreams260K-f32\", \"prompt\": \"a</s>b\", \"temperature\": 0, \"max_tokens\": 1}"
check "completion with a control token" 200 "$(req r5s POST /v1/completions "$tmp/c5s")"
check "its prompt tokens" "$("$NATTER_BIN" tokenize -m "$M" --special "a</s>b" | wc -w | tr -d ' ')" \
	"$(jget "$tmp/r5s" 'd["usage"]["prompt_tokens"]')"
# Stop strings, streamed and not: the text ends before the first one.
stopped=${expect%%unfold*}
body c6 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"stop\": [\"zzz\", \"unfold\"]}"
check "stop" 200 "$(req r6 POST /v1/chat/completions "$tmp/c6")"
check "stop text" "$stopped|stop" "$(jget "$tmp/r6" 'd["choices"][0]["message"]["content"] + "|" + d["choices"][0]["finish_reason"]')"
body c7 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"stop\": \"unfold\", \"stream\": true}"
check "stop stream" 200 "$(req r7 POST /v1/chat/completions "$tmp/c7")"
sse "$tmp/r7" > "$tmp/r7.json" && ok || bad "stop stream events"
check "stop stream text" "$stopped|stop" "$(jget "$tmp/r7.json" 'd["text"] + "|" + d["finish"]')"
# Both replies record the stop strings they were made with.
check "stop strings recorded" '["zzz","unfold"] ["unfold"]' "$("$PY" - "$tmp/main.db" <<'EOF2'
import sqlite3, sys, time
end = time.monotonic() + 30
while True:   # the reply is sent before it is recorded
    try:
        rows = sqlite3.connect(sys.argv[1]).execute("SELECT stop FROM generations WHERE stop LIKE '%unfold%' "
                                                     "ORDER BY id").fetchall()
    except sqlite3.Error:
        rows = []
    stops = [r[0] for r in rows]
    # r6's, then r7's after it (an earlier test's request may have had "unfold" too)
    if '["zzz","unfold"]' in stops and '["unfold"]' in stops[stops.index('["zzz","unfold"]'):] \
            or time.monotonic() > end:
        break
    time.sleep(0.05)
i = stops.index('["zzz","unfold"]') if '["zzz","unfold"]' in stops else 0
print(" ".join(stops[i:i + 2]))
EOF2
)"
# A /v1/completions reply was fed the bare prompt, no chat template, and so
# was every chat reply here (the server's template passes the text through):
# export writes none as a chat turn, leaves each out and counts it.
n_raw=$("$PY" - "$tmp/main.db" <<'EOF2'
import sqlite3, sys, time
end = time.monotonic() + 30
n = 0
while True:   # the reply is sent before it is recorded
    try:
        db = sqlite3.connect(sys.argv[1], timeout=10)
        n = db.execute("SELECT count(*) FROM generations WHERE template_name LIKE '%completions%'").fetchone()[0]
        if n >= 2:
            db.execute("INSERT OR REPLACE INTO ratings(generation_id, kind, value, created) "
                       "SELECT id, 'thumb', 1, 1 FROM generations")
            db.commit()
            n = db.execute("SELECT count(*) FROM generations").fetchone()[0]
            break
    except sqlite3.Error:
        n = 0
    if time.monotonic() > end:
        break
    time.sleep(0.05)
print(n)
EOF2
)
[ "$n_raw" -ge 2 ] && ok || bad "the two completions were not recorded ($n_raw replies)"
"$NATTER_BIN" export --db "$tmp/main.db" --format sft --include-incomplete -o "$tmp/sft.jsonl" 2>"$tmp/sft.err"
check "export status" 0 $?
check "export writes no reply to a bare prompt" "0" "$(wc -l < "$tmp/sft.jsonl" | tr -d ' ')"
check "export leaves them out" "left out $n_raw rated" "$(grep -o "left out [0-9]* rated" "$tmp/sft.err" | tail -n 1)"
grep -q "bare prompt" "$tmp/sft.err" && ok || bad "export does not say why: $(cat "$tmp/sft.err")"
# Sampling fields are honoured: a seed repeats a sampled reply; top_k 1 is greedy.
body c8 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 1.5, \"seed\": 42, \"max_tokens\": 24, \"top_p\": 0.9, \"min_p\": 0.01, \"repeat_penalty\": 1.1}"
req r8a POST /v1/chat/completions "$tmp/c8" >/dev/null; req r8b POST /v1/chat/completions "$tmp/c8" >/dev/null
check "same seed, same reply" "$(jget "$tmp/r8a" 'd["choices"][0]["message"]["content"]')" "$(jget "$tmp/r8b" 'd["choices"][0]["message"]["content"]')"
body c9 "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 1.5, \"top_k\": 1, \"max_completion_tokens\": 24}"
req r9 POST /v1/chat/completions "$tmp/c9" >/dev/null
check "top_k 1 is greedy" "$expect" "$(jget "$tmp/r9" 'd["choices"][0]["message"]["content"]')"

# As OpenAI's API takes them: a system message amid the conversation goes
# to the template where it stands, and a last message from the assistant is
# a finished turn, the reply the next message.  (The raw template joins the
# contents: both prompts are the greedy run's.)
body cmid "{\"model\": \"aidreams260K-f32\", \"messages\": [{\"role\": \"user\", \"content\": \"I\"}, {\"role\": \"system\", \"content\": \" dreamed\"}, {\"role\": \"user\", \"content\": \" that\"}], \"temperature\": 0, \"max_tokens\": 24}"
check "a system message amid the conversation" 200 "$(req rmid POST /v1/chat/completions "$tmp/cmid")"
check "its reply" "$expect" "$(jget "$tmp/rmid" 'd["choices"][0]["message"]["content"]')"
body cpre "{\"model\": \"aidreams260K-f32\", \"messages\": [{\"role\": \"user\", \"content\": \"I dreamed\"}, {\"role\": \"assistant\", \"content\": \" that\"}], \"temperature\": 0, \"max_tokens\": 24}"
check "the assistant's message last" 200 "$(req rpre POST /v1/chat/completions "$tmp/cpre")"
check "its reply" "$expect" "$(jget "$tmp/rpre" 'd["choices"][0]["message"]["content"]')"
# The history keeps both as they were sent and answered: every message in
# its place, the prompt the reply was made from.
check "both recorded as sent" "user,system,user,assistant|I dreamed that user,assistant,assistant|I dreamed that" \
	"$("$PY" - "$tmp/main.db" <<'EOF2'
import sqlite3, sys, time
end = time.monotonic() + 30
out = []
while True:   # the reply is sent before it is recorded
    out = []
    try:
        db = sqlite3.connect(sys.argv[1])
        for first in ("I", "I dreamed"):
            conv = db.execute("SELECT c.id FROM conversations c WHERE (SELECT content FROM messages m WHERE "
                              "m.conversation_id = c.id ORDER BY seq LIMIT 1) = ? ORDER BY c.id DESC LIMIT 1",
                              (first,)).fetchone()
            roles = db.execute("SELECT group_concat(role, ',') FROM (SELECT role FROM messages WHERE "
                               "conversation_id = ? ORDER BY seq)", conv).fetchone()[0]
            prompt = db.execute("SELECT g.prompt_text FROM generations g JOIN messages m ON m.id = g.message_id "
                                "WHERE m.conversation_id = ?", conv).fetchone()[0]
            out.append("%s|%s" % (roles, prompt))
    except (sqlite3.Error, TypeError):
        out = []
    if len(out) == 2 or time.monotonic() > end:
        break
    time.sleep(0.05)
print(" ".join(out))
EOF2
)"

# Bad requests: 4xx, OpenAI's error shape, the field named.
# bad_req LABEL STATUS PARAM BODY
bad_req() {
	body bb "$4"
	check "$1 status" "$2" "$(req rb POST /v1/chat/completions "$tmp/bb")"
	check "$1 error" "invalid_request_error|$3" "$(jget "$tmp/rb" 'd["error"]["type"] + "|" + str(d["error"]["param"])')"
}
bad_req "malformed JSON" 400 None '{"model": "aidreams260K-f32", "messages": ['
bad_req "empty body" 400 None ''
bad_req "not an object" 400 None '[1, 2]'
bad_req "messages a string" 400 messages '{"model": "aidreams260K-f32", "messages": "hi"}'
bad_req "temperature a string" 400 temperature "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": \"hot\"}"
bad_req "max_tokens not an integer" 400 max_tokens "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"max_tokens\": 1.5}"
bad_req "top_p out of range" 400 top_p "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"top_p\": 2}"
bad_req "stop a number" 400 stop "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"stop\": 5}"
bad_req "stream a string" 400 stream "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"stream\": \"yes\"}"
bad_req "chat_template_kwargs.enable_thinking a string" 400 chat_template_kwargs \
	"{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"chat_template_kwargs\": {\"enable_thinking\": \"no\"}}"
bad_req "reasoning_format unknown" 400 reasoning_format \
	"{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"reasoning_format\": \"xml\"}"
bad_req "chat_template_kwargs a list" 400 chat_template_kwargs \
	"{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"chat_template_kwargs\": []}"
bad_req "a tool message" 400 "messages[0].role" '{"model": "aidreams260K-f32", "messages": [{"role": "tool", "content": "x"}]}'
bad_req "an image part" 400 "messages[0].content[0]" '{"model": "aidreams260K-f32", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}'
bad_req "only system messages" 400 messages '{"model": "aidreams260K-f32", "messages": [{"role": "system", "content": "x"}]}'
bad_req "no model" 400 model "{\"messages\": $msgs}"
bad_req "n 2" 400 n "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"n\": 2}"
# A seed a double cannot hold exactly (2^53 + 1 reads as 2^53) is refused, not rounded to another.
bad_req "seed 2^53 + 1" 400 seed "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": 9007199254740993}"
bad_req "seed 2^53" 400 seed "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": 9007199254740992}"
bad_req "seed 1e300" 400 seed "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": 1e300}"
bad_req "seed -2" 400 seed "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": -2}"
bad_req "seed 1.5" 400 seed "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": 1.5}"
body cseedmax "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"seed\": 9007199254740991, \"max_tokens\": 1}"
check "seed 2^53 - 1 is taken" 200 "$(req rseedmax POST /v1/chat/completions "$tmp/cseedmax")"
bad_req "unknown model" 404 model "{\"model\": \"gpt-4o\", \"messages\": $msgs}"
check "unknown model code" model_not_found "$(jget "$tmp/rb" 'd["error"]["code"]')"
"$PY" -c 'import json; print(json.dumps({"model": "aidreams260K-f32", "messages": [{"role": "user", "content": "a" * (10 << 20)}]}))' > "$tmp/big"
check "10 MB body" 413 "$(req rbig POST /v1/chat/completions "$tmp/big")"
check "10 MB body error" "request_too_large 4 MiB" "$(jget "$tmp/rbig" 'd["error"]["code"] + " " + ("4 MiB" if "4 MiB" in d["error"]["message"] else d["error"]["message"])')"
check "prompt longer than the context" 400 "$(body long "{\"model\": \"aidreams260K-f32\", \"prompt\": \"$(head -c 3000 /dev/zero | tr '\0' 'a')\"}"; req rl POST /v1/completions "$tmp/long")"
grep -q "context" "$tmp/rl" && ok || bad "long prompt message: $(cat "$tmp/rl")"
# An empty prompt: a model that starts with BOS continues from it; one
# with no BOS token has nothing to continue (Qwen's GGUFs add none), and
# its reply's first token must not be sampled from the logits the last
# request left.  The fixture with add_bos_token turned off, in $tmp.
check "empty prompt, a model with BOS" 200 "$(body ce0 "{\"model\": \"aidreams260K-f32\", \"prompt\": \"\", \"max_tokens\": 4}"; req re0 POST /v1/completions "$tmp/ce0")"
"$PY" - "$M" "$tmp/nobos.gguf" <<'PYEOF'
import struct, sys
# Its two adjacent u32 KVs seperator_token_id and padding_token_id become
# add_bos_token (a bool) and an unknown u32 key of the same total size:
# nothing after them moves.
b = bytearray(open(sys.argv[1], "rb").read())
def kv(key, t, val):
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + val
sep, pad = kv("tokenizer.ggml.seperator_token_id", 4, b""), kv("tokenizer.ggml.padding_token_id", 4, b"")
i = b.find(sep)
j = i + len(sep) + 4
assert i > 0 and b[j:j + len(pad)] == pad, "the two KVs, adjacent"
new = kv("tokenizer.ggml.add_bos_token", 7, b"\0") + kv("natter.test.filler." + "x" * 20, 4, b"\0" * 4)
assert len(new) == j + len(pad) + 4 - i
b[i:j + len(pad) + 4] = new
open(sys.argv[2], "wb").write(b)
PYEOF
"$NATTER_BIN" info -m "$tmp/nobos.gguf" 2>&1 | grep -q "adds BOS: no" && ok || bad "the fixture without BOS: $("$NATTER_BIN" info -m "$tmp/nobos.gguf" 2>&1)"
M0=$M; M=$tmp/nobos.gguf; P0=$P
start nobos --api-key-env NATTER_TEST_KEY --no-history -c 128
M=$M0; P=$port
check "a prompt, a model without BOS" 200 "$(body cnb1 "{\"model\": \"nobos\", \"prompt\": \"$prompt\", \"max_tokens\": 4}"; req rnb1 POST /v1/completions "$tmp/cnb1")"
check "empty prompt, a model without BOS" 400 "$(body cnb0 "{\"model\": \"nobos\", \"prompt\": \"\", \"max_tokens\": 4}"; req rnb0 POST /v1/completions "$tmp/cnb0")"
check "empty prompt, without BOS: why" "invalid_request_error prompt empty" \
	"$(jget "$tmp/rnb0" 'd["error"]["type"] + " " + d["error"]["param"] + (" empty" if "empty" in d["error"]["message"] else " " + d["error"]["message"])')"
P=$P0
# A conversation longer than the context, each message of it short enough:
# refused as the OpenAI API refuses it, not answered with its older turns
# dropped unsaid.
"$PY" -c 'import json; m = [{"role": r, "content": "hello world " * 40} for i in range(8) for r in ("user", "assistant")]
print(json.dumps({"model": "aidreams260K-f32", "messages": m + [{"role": "user", "content": "and now?"}], "max_tokens": 4}))' \
	> "$tmp/turns"
check "a conversation longer than the context" 400 "$(req rturns POST /v1/chat/completions "$tmp/turns")"
check "its error code" context_length_exceeded "$(jget "$tmp/rturns" 'd["error"]["code"]')"
check "GET on a POST route" 405 "$(req r405 GET /v1/chat/completions)"
check "unknown path" 404 "$(req r404 GET /v2/nothing)"
check "a path with an escape sequence" 404 "$(req resc GET "/v1/x%1b%5b2J")"
grep -q "$(printf '\033')" "$tmp/main.log" && bad "a terminal escape reached the log" || ok
grep -qF 'there is no /v1/x\x1b[2J here' "$tmp/main.log" && ok || bad "the path is not in the log as expected"
# A client's bytes that are not UTF-8 (here in a part's type, which the
# error names) reach the log escaped, as control characters do.
printf '{"model": "aidreams260K-f32", "messages": [{"role": "user", "content": [{"type": "\377\376img\302\233x\033[2J\303\251"}]}]}' > "$tmp/butf"
check "a part type that is not UTF-8" 400 "$(req rbutf POST /v1/chat/completions "$tmp/butf")"
check "the log: its bytes escaped, no raw ones" "True True" "$("$PY" -c '
import sys
log = open(sys.argv[1], "rb").read()
print(b"\xff" not in log and b"\xc2\x9b" not in log, b"of type '"'"'\\xff\\xfeimg\\xc2\\x9bx\\x1b[2J\xc3\xa9'"'"' is not" in log)' "$tmp/main.log")"
# Still serving, with the same answer.
check "after the bad requests" 200 "$(req r10 POST /v1/chat/completions "$tmp/c1")"
check "same answer after the bad requests" "$expect" "$(jget "$tmp/r10" 'd["choices"][0]["message"]["content"]')"
check "only the long prompt and conversation failed in the engine" 2 "$(curl -s "http://127.0.0.1:$P/health" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["failed"])')"

# HTTP details: a 405 names the methods the path has (Allow); a body with
# anything but whitespace after its JSON value is refused, not cut short.
# hdr METHOD PATH: the status and Allow header of a request without a body.
hdr() { curl -s -o /dev/null -D - -X "$1" -H "Authorization: Bearer $key" "http://127.0.0.1:$P$2" |
	tr -d '\r' | sed -n -e 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' -e 's/^[Aa]llow: //p' | tr '\n' ' '; }
check "OPTIONS on a POST route: 405 with Allow" "405 POST " "$(hdr OPTIONS /v1/chat/completions)"
check "DELETE on a model: 405 with Allow" "405 GET " "$(hdr DELETE /v1/models/aidreams260K-f32)"
check "HEAD /health: 405 with Allow" "405 GET " "$(curl -s -I -H "Authorization: Bearer $key" "http://127.0.0.1:$P/health" |
	tr -d '\r' | sed -n -e 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' -e 's/^[Aa]llow: //p' | tr '\n' ' ')"
bad_req "trailing garbage after the JSON" 400 None "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs} xyz"
grep -q "not valid JSON" "$tmp/rb" && ok || bad "trailing garbage message: $(cat "$tmp/rb")"
body ctw "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"max_tokens\": 2}
  "
check "trailing whitespace after the JSON" 200 "$(req rtw POST /v1/chat/completions "$tmp/ctw")"

# A client that shuts down its sending side once the request is out is
# still reading: it gets the whole reply (after a "100 Continue", which
# HTTP/1.1 clients skip), streamed or not.  The slow server: the reply
# takes longer than one look at the socket.
"$PY" - "$SLOW" "$key" > "$tmp/halfclose.out" <<'EOF2'
import json, socket, sys
port, key = int(sys.argv[1]), sys.argv[2]
def ask(stream):
    body = json.dumps({"model": "aidreams260K-f32", "prompt": "I dreamed that", "max_tokens": 8,
                       "stream": stream}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body)
    s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError as e:
        return "error " + str(e)
    s.close()
    while got.startswith(b"HTTP/1.1 1"):   # interim responses
        got = got[got.index(b"\r\n\r\n") + 4:]
    head, _, rest = got.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if head else "none"
    if stream:
        return status + (" [DONE]" if b"data: [DONE]" in rest else " cut")
    try:
        return status + " " + json.loads(rest)["choices"][0]["finish_reason"]
    except ValueError:
        return status + " no JSON"
print(ask(False), "|", ask(True))
EOF2
check "a half-closed client gets its reply" "200 length | 200 [DONE]" "$(cat "$tmp/halfclose.out")"

# One address cannot take every connection: past the limit per address its
# connections are closed (the first four past it once their 2 s to ask for a
# 429 are over, the rest at once), and another address is still answered.
# (The whole loopback is this machine: 127.0.0.2 is another address.)
"$PY" - "$P" > "$tmp/perip.out" <<'EOF2'
import select, socket, sys, time
port = int(sys.argv[1])
conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(70)]
def closed(s):
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1) == b""
    except OSError:
        return True
# (A busy machine may take a while to accept them all.)
gone, end = set(), time.monotonic() + 10
while True:
    gone |= {i for i, s in enumerate(conns) if i not in gone and closed(s)}
    if len(gone) >= 49 or time.monotonic() > end:
        break
    time.sleep(0.2)
time.sleep(0.3)
gone |= {i for i, s in enumerate(conns) if i not in gone and closed(s)}
n = len(gone)
try:
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    other = s.recv(64).split(b"\r\n")[0].decode()
except OSError as e:
    other = "error " + str(e)
print("%s|%s" % ("49 closed" if n == 49 else "%d closed" % n, other or "closed"))
EOF2
check "70 idle connections from one address: 21 kept (--max-queue 16 + 5), /health from another" "49 closed|HTTP/1.1 200 OK" \
	"$(cat "$tmp/perip.out")"
# A request on a connection past the address's share is answered, as an OpenAI client can read it:
# 429 with the error object and Retry-After, then the connection is closed.
"$PY" - "$P" "$key" > "$tmp/perip429.out" <<'EOF2'
import json, socket, sys
port, key = int(sys.argv[1]), sys.argv[2]
# From an address of its own (127.0.0.3: the last test's connections from 127.0.0.1 may not
# all be closed yet).  Accepted in the order they connect: the 22nd comes past the 21 of the share.
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0))
conns = [conn() for _ in range(21)]
s = conn()
got = b""
try:
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() + b"\r\n\r\n")
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except OSError:
    pass
head, _, body = got.partition(b"\r\n\r\n")
status = head.split(b" ")[1].decode() if head else "none"
try:
    err = json.loads(body)["error"]
    print(status, err["code"], err["type"], b"retry-after: 5" in head.lower())
except (ValueError, KeyError, TypeError):
    print(status, "no error object:", body[:80])
EOF2
check "a connection past the share: 429, the error object, Retry-After" "429 rate_limit_exceeded requests True" \
	"$(cat "$tmp/perip429.out")"

# An idle connection is closed after --idle-timeout (here 1 s), a request
# cut in the middle of its headers too; a reply that takes longer (three
# 1.2 s tokens), streamed or not, is not cut; a full queue's 503 says when
# to come back (Retry-After).
start lock --no-history --chat-template "$tmp/raw.jinja" -c 128 --idle-timeout 1 --token-delay 1200 --max-queue 1
"$PY" - "$port" > "$tmp/lock.out" <<'EOF2'
import json, socket, sys, time, urllib.request
port = int(sys.argv[1])
out = []
idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
idle[2].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
t0 = time.monotonic()
for s in idle:
    try:
        s.recv(1)
    except OSError:
        pass
dt = time.monotonic() - t0
out.append("idle closed" if dt < 8 else "idle kept %.1f s" % dt)
def ask(stream, tokens=3):
    body = json.dumps({"model": "aidreams260K-f32", "prompt": "I dreamed that", "max_tokens": tokens,
                       "stream": stream}).encode()
    return urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port, data=body,
                                  headers={"Content-Type": "application/json"})
t0 = time.monotonic()
try:
    d = json.load(urllib.request.urlopen(ask(False), timeout=60))
    out.append("%s %.0f" % (d["choices"][0]["finish_reason"], min(time.monotonic() - t0, 3)))
except Exception as e:
    out.append("whole: " + str(e))
t0 = time.monotonic()
try:
    raw = urllib.request.urlopen(ask(True), timeout=60).read()
    out.append("%s %.0f" % ("[DONE]" if b"data: [DONE]" in raw else "cut", min(time.monotonic() - t0, 3)))
except Exception as e:
    out.append("stream: " + str(e))
def health():
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=10))
def until(cond):
    end = time.monotonic() + 30
    while time.monotonic() < end and not cond(health()):
        time.sleep(0.05)
busy = []
for want in (lambda h: h["running"], lambda h: h["queued"] == 1):
    body = json.dumps({"model": "aidreams260K-f32", "prompt": "x", "max_tokens": 20}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    busy.append(s)
    until(want)
try:
    urllib.request.urlopen(ask(False), timeout=30)
    out.append("not refused")
except urllib.error.HTTPError as e:
    out.append("%d Retry-After %s" % (e.code, e.headers.get("Retry-After")))
for s in busy:
    s.close()
print("|".join(out))
EOF2
check "--idle-timeout 1: idle closed; 3.6 s replies whole and streamed; 503 Retry-After" \
	"idle closed|length 3|[DONE] 3|503 Retry-After 5" "$(cat "$tmp/lock.out")"

# A client that leaves mid-stream: the server cancels the generation.
before=$(curl -s "http://127.0.0.1:$SLOW/health" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cancelled"])')
"$PY" - "$SLOW" "$key" > "$tmp/leave.out" <<'EOF'
import json, socket, sys
port, key = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"model": "aidreams260K-f32", "messages": [{"role": "user", "content": "Once upon"}],
                   "max_tokens": 100, "stream": True}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
          b"\r\n\r\n" + body)
got = b""
while got.count(b"data: ") < 3:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.close()
print(got.count(b"data: ") >= 3)
EOF
check "the leaving client read 3 events or more" True "$(cat "$tmp/leave.out")"
i=0
while [ $i -lt 300 ]; do
	now=$(curl -s "http://127.0.0.1:$SLOW/health" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cancelled"])')
	[ "$now" -gt "$before" ] && break
	sleep 0.1; i=$((i + 1))
done
[ "$now" -gt "$before" ] && ok || bad "the server did not cancel the abandoned stream: $(cat "$tmp/slow.log")"
grep -q "cancelled after [0-9]* generated tokens: the client went away" "$tmp/slow.log" && ok ||
	bad "no cancellation in the log: $(cat "$tmp/slow.log")"
# Its generation is in the history as cancelled, cut short of max_tokens.
"$PY" - "$tmp/slow.db" > "$tmp/slowdb.out" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT g.state, g.n_gen FROM generations g JOIN messages m ON m.id = g.message_id "
                  "JOIN messages u ON u.conversation_id = m.conversation_id AND u.role = 'user' "
                  "WHERE u.content = 'Once upon'").fetchall()
print(" ".join("%s:%d" % (s, n < 100) for s, n in rows))
EOF
check "history: the abandoned stream" "cancelled:1" "$(cat "$tmp/slowdb.out")"

# A request waiting in the queue whose client leaves is dropped before it runs.
body ca "{\"model\": \"aidreams260K-f32\", \"messages\": [{\"role\": \"user\", \"content\": \"Dreams\"}], \"max_tokens\": 100, \"stream\": true}"
curl -sN -o "$tmp/running.out" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
	--data-binary "@$tmp/ca" "http://127.0.0.1:$SLOW/v1/chat/completions" &
running=$!
"$PY" - "$SLOW" "$key" > "$tmp/queued.out" <<'EOF'
import json, socket, sys, time, urllib.request
port, key = int(sys.argv[1]), sys.argv[2]
def health():
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=10))
def until(cond, what):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        h = health()
        if cond(h):
            return h
        time.sleep(0.05)
    print("timeout waiting for", what, health())
    sys.exit(1)
until(lambda h: h["running"], "the first request to run")
body = json.dumps({"model": "aidreams260K-f32", "messages": [{"role": "user", "content": "Queued"}]}).encode()
out = []
# Over HTTP/1.1 and over HTTP/1.0 (nginx's default to a backend, which
# cannot be sent the 100 Continue that tells a closed client from a
# half-closed one: its end of file is taken as gone).
for version in (b"1.1", b"1.0"):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/chat/completions HTTP/" + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body)
    h0 = until(lambda h: h["queued"] == 1, "the second request to wait")["cancelled"]
    s.close()
    h = until(lambda h: h["cancelled"] == h0 + 1 and h["queued"] == 0, "the waiting request to be dropped")
    out.append("dropped %s" % h["running"])
print(" ".join(out))
EOF
check "a waiting request whose client left (HTTP/1.1, HTTP/1.0)" "dropped True dropped True" "$(cat "$tmp/queued.out")"
grep -q "the client went away while the request waited; dropped" "$tmp/slow.log" && ok || bad "no drop in the log: $(cat "$tmp/slow.log")"
kill "$running" 2>/dev/null; wait "$running" 2>/dev/null

# The history of the main server: one conversation per answered request, with its messages.
"$PY" - "$tmp/main.db" "$expect" > "$tmp/db.out" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = db.execute("SELECT count(*) FROM conversations").fetchone()[0]
first = db.execute("SELECT g.content, g.state, g.n_gen, g.temp FROM generations g ORDER BY g.id LIMIT 1").fetchone()
turn = db.execute("SELECT group_concat(role, ',') FROM (SELECT role FROM messages WHERE conversation_id = "
                  "(SELECT conversation_id FROM messages WHERE content = ' Then') ORDER BY seq)").fetchone()[0]
# The seeded request (c8): stored with the settings it asked for.
seeded = db.execute("SELECT g.temp, g.top_p, g.min_p, g.repeat_penalty, g.seed, g.max_tokens FROM generations g "
                    "WHERE g.seed = 42 ORDER BY g.id LIMIT 1").fetchone()
seeded = seeded and "%g %g %g %g %d %d" % seeded
print(n >= 10, first[0] == sys.argv[2], first[1], first[2], first[3], turn, seeded)
EOF
check "history of the main server" "True True complete 24 0.0 user,assistant,user,assistant 1.5 0.9 0.01 1.1 42 24" \
	"$(cat "$tmp/db.out")"
# A reasoning model's reply: the history keeps the reasoning apart from the answer, as natter chat
# stores the same reply; the client gets them apart too (reasoning_content, whole and streamed, with
# usage's reasoning_tokens), or as the model wrote them (--reasoning-format none).  The template
# opens the reasoning; the close tag is a word from the middle of the greedy reply.
printf '%s' "{% for message in messages %}{{ message['content'] }}{% endfor %}<think>" > "$tmp/think.jinja"
printf '%s\n' "$prompt" | "$NATTER_BIN" chat --plain -m "$M" --chat-template "$tmp/think.jinja" --temp 0 -n 24 -t 1 \
	--db "$tmp/think0.db" >/dev/null 2>&1
tag=$("$PY" -c '
import sqlite3, sys
w = sqlite3.connect(sys.argv[1]).execute("SELECT reasoning FROM generations").fetchone()[0].split()
print(w[len(w) // 2] if len(w) > 2 else "")' "$tmp/think0.db")
[ -n "$tag" ] && ok || bad "the reply in the reasoning has too few words for a close tag"
printf '%s\n' "$prompt" | "$NATTER_BIN" chat --plain -m "$M" --chat-template "$tmp/think.jinja" --think-tags "<think> $tag" \
	--temp 0 -n 24 -t 1 --db "$tmp/think-chat.db" >/dev/null 2>&1
start think --db "$tmp/think-serve.db" --chat-template "$tmp/think.jinja" --think-tags "<think> $tag"
body ct "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24}"
body cts "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"stream\": true, \"stream_options\": {\"include_usage\": true}}"
check "reasoning reply" 200 "$(curl -s -o "$tmp/rt" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary "@$tmp/ct" "http://127.0.0.1:$port/v1/chat/completions")"
check "reasoning stream" 200 "$(curl -s -o "$tmp/rts" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary "@$tmp/cts" "http://127.0.0.1:$port/v1/chat/completions")"
sse "$tmp/rts" > "$tmp/rts.json" 2>"$tmp/rts.err" && ok || bad "reasoning stream events: $(cat "$tmp/rts.err")"
THINK=$port
start thinkinline --no-history --chat-template "$tmp/think.jinja" --think-tags "<think> $tag" --reasoning-format none
check "reasoning reply, --reasoning-format none" 200 "$(curl -s -o "$tmp/rti" -w '%{http_code}' \
	-H 'Content-Type: application/json' --data-binary "@$tmp/ct" "http://127.0.0.1:$port/v1/chat/completions")"
# The request's reasoning_format (llama-server's field) over the server's.
body ctd "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"reasoning_format\": \"deepseek\"}"
body ctn "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 24, \"reasoning_format\": \"none\"}"
check "reasoning_format deepseek over --reasoning-format none" 200 "$(curl -s -o "$tmp/rtd" -w '%{http_code}' \
	-H 'Content-Type: application/json' --data-binary "@$tmp/ctd" "http://127.0.0.1:$port/v1/chat/completions")"
check "reasoning_format none" 200 "$(curl -s -o "$tmp/rtn" -w '%{http_code}' \
	-H 'Content-Type: application/json' --data-binary "@$tmp/ctn" "http://127.0.0.1:$THINK/v1/chat/completions")"
check "reasoning_format: each request's own" "True True" "$("$PY" -c '
import json, sys
a, b, w, n = (json.load(open(f))["choices"][0]["message"] for f in sys.argv[1:5])
print(a == w, b == n)' "$tmp/rtd" "$tmp/rtn" "$tmp/rt" "$tmp/rti")"
"$PY" - "$tmp/think-chat.db" "$tmp/think-serve.db" "$tmp/rt" "$tag" "$tmp/rts.json" "$tmp/rti" > "$tmp/think.out" <<'EOF2'
import json, sqlite3, sys, time
q = "SELECT g.content, g.reasoning, g.n_reasoning, m.content FROM generations g JOIN messages m ON m.id = g.message_id"
chat = sqlite3.connect(sys.argv[1]).execute(q).fetchall()
end = time.monotonic() + 30
while True:   # the reply is sent before it is recorded
    try:
        serve = sqlite3.connect(sys.argv[2]).execute(q + " ORDER BY g.id").fetchall()
    except sqlite3.Error:
        serve = []
    if len(serve) >= 3 or time.monotonic() > end:
        break
    time.sleep(0.05)
reply = json.load(open(sys.argv[3]))
sent = reply["choices"][0]["message"]
stream = json.load(open(sys.argv[5]))
inline = json.load(open(sys.argv[6]))["choices"][0]["message"]
ans, rea, n_rea, msg = serve[0] if serve else ("", None, None, None)
print(len(chat) == 1 and serve == chat * 3, bool(ans) and bool(rea) and (n_rea or 0) > 0,
      msg == ans,
      sent["content"] == ans and sent.get("reasoning_content") == rea,
      reply["usage"].get("completion_tokens_details", {}).get("reasoning_tokens") == n_rea,
      stream["text"] == ans and stream["reasoning"] == rea,
      (stream["usage"] or {}).get("completion_tokens_details", {}).get("reasoning_tokens") == n_rea,
      "reasoning_content" not in inline and inline["content"].startswith(rea + sys.argv[4]) and
      inline["content"].endswith(ans))
if serve != chat * 3:
    print("chat stored", chat, "serve stored", serve, file=sys.stderr)
EOF2
check "reasoning: stored apart as natter chat stores it; sent apart (whole, streamed), or whole with none" \
	"True True True True True True True True" "$(cat "$tmp/think.out")"
# chat_template_kwargs.enable_thinking reaches the template, request by request: false closes the
# reasoning in the prompt (a Qwen3-like template), so the reply is all answer; true or absent opens it.
printf '%s' "{% for message in messages %}{{ message['content'] }}{% endfor %}{% if enable_thinking is defined and not enable_thinking %}<think></think>{% else %}<think>{% endif %}" > "$tmp/switch.jinja"
start switch --db "$tmp/switch.db" --chat-template "$tmp/switch.jinja"
for t in false none true; do
	case $t in none) kw= ;; *) kw=", \"chat_template_kwargs\": {\"enable_thinking\": $t, \"other\": 1}" ;; esac
	body "cs-$t" "{\"model\": \"aidreams260K-f32\", \"messages\": $msgs, \"temperature\": 0, \"max_tokens\": 8$kw}"
	check "enable_thinking $t" 200 "$(curl -s -o "$tmp/rs-$t" -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "@$tmp/cs-$t" "http://127.0.0.1:$port/v1/chat/completions")"
done
"$PY" - "$tmp/switch.db" "$tmp/rs-false" "$tmp/rs-none" "$tmp/rs-true" > "$tmp/switch.out" <<'EOF2'
import json, sqlite3, sys, time
end = time.monotonic() + 30
while True:   # the reply is sent before it is recorded
    try:
        rows = sqlite3.connect(sys.argv[1]).execute("SELECT prompt_text, reasoning, content FROM generations "
                                                     "ORDER BY id").fetchall()
    except sqlite3.Error:
        rows = []
    if len(rows) >= 3 or time.monotonic() > end:
        break
    time.sleep(0.05)
out = []
for (prompt, rea, ans), f in zip(rows, sys.argv[2:]):
    m = json.load(open(f))["choices"][0]["message"]
    out.append("%s:%s:%s" % (prompt.endswith("<think></think>") and "closed" or prompt.endswith("<think>") and "open",
                             "reasoning" if m.get("reasoning_content") and not m["content"] and rea == m["reasoning_content"]
                             else "answer" if m["content"] and "reasoning_content" not in m and ans == m["content"] else "?",
                             len(rows)))
print(" ".join(out))
EOF2
check "enable_thinking false, absent, true: the prompt and the reply" "closed:answer:3 open:reasoning:3 open:reasoning:3" \
	"$(cat "$tmp/switch.out")"
# A template that refuses a system message amid the conversation: the client gets 400 with the
# template's own words; the assistant's message last is still taken.  (And one that fails on the
# message "undefined context", its error naming 'context': that is no context length.)
printf '%s' "{% for message in messages %}{% if message['role'] == 'system' and not loop.first %}{{ raise_exception('System messages must come first') }}{% endif %}{% if message['content'] == 'undefined context' %}{{ message.nothing.context }}{% endif %}{{ message['content'] }}{% endfor %}" > "$tmp/strict.jinja"
start strict --no-history --chat-template "$tmp/strict.jinja" -c 128
check "a template refuses the system message amid the conversation" "400 messages True" "$(curl -s -o "$tmp/rstrict" \
	-w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$tmp/cmid" "http://127.0.0.1:$port/v1/chat/completions"
	) $(jget "$tmp/rstrict" 'd["error"]["param"] + " " + str("System messages must come first" in d["error"]["message"])')"
check "that template, the assistant's message last" 200 "$(curl -s -o /dev/null -w '%{http_code}' \
	-H 'Content-Type: application/json' --data-binary "@$tmp/cpre" "http://127.0.0.1:$port/v1/chat/completions")"
body cundef '{"model": "aidreams260K-f32", "messages": [{"role": "user", "content": "undefined context"}], "max_tokens": 2}'
check "a template error that says 'context': 400, no context_length_exceeded" "400 None True" "$(curl -s -o "$tmp/rundef" \
	-w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$tmp/cundef" "http://127.0.0.1:$port/v1/chat/completions"
	) $(jget "$tmp/rundef" 'str(d["error"]["code"]) + " " + str("context" in d["error"]["message"])')"
# Completion ids do not repeat across runs: two servers (as one restarted) asked at once, in the same
# second, their request numbers alike, give different ids; one server's ids differ from each other.
start ida --no-history -c 128
IDA=$port
start idb --no-history -c 128
check "ids of two runs" "ids differ in a run|same second, ids differ" "$("$PY" - "$IDA" "$port" <<'EOF2'
import json, sys, threading, urllib.request
ports = [int(p) for p in sys.argv[1:3]]
def ask(port, out=None, k=0):
    body = json.dumps({"model": "aidreams260K-f32", "messages": [{"role": "user", "content": "x"}],
                       "max_tokens": 1}).encode()
    r = urllib.request.Request("http://127.0.0.1:%d/v1/chat/completions" % port, data=body,
                               headers={"Content-Type": "application/json"})
    d = json.load(urllib.request.urlopen(r, timeout=60))
    if out is not None:
        out[k] = d
    return d
# Two requests to each (their numbers stay alike): one run's ids.
a = [ask(ports[0])["id"], ask(ports[0])["id"]]
ask(ports[1]), ask(ports[1])
res = ["ids differ in a run" if a[0] != a[1] else "the same id twice in a run: " + a[0]]
for _ in range(20):   # until a pair lands in the same second (the first, most likely)
    out = [None, None]
    ts = [threading.Thread(target=ask, args=(p, out, k)) for k, p in enumerate(ports)]
    for t in ts: t.start()
    for t in ts: t.join()
    if out[0]["created"] == out[1]["created"]:
        res.append("same second, ids differ" if out[0]["id"] != out[1]["id"] else "same second, the same id " +
                   out[0]["id"])
        break
else:
    res.append("no two requests in the same second")
print("|".join(res))
EOF2
)"
# A model the history could not take at start (here a trigger refuses it) is tried again with each
# reply, and no reply is recorded without it.  (A copy of the model: its file is changed below.)
mkdir -p "$tmp/nmm" "$tmp/nmm2" && cp "$M" "$tmp/nmm/aidreams260K-f32.gguf" && cp "$M" "$tmp/nmm2/aidreams260K-f32.gguf"
M0=$M
M="$tmp/nmm/aidreams260K-f32.gguf"
start nm0 --db "$tmp/nm.db" --chat-template "$tmp/raw.jinja"
kill -TERM "${pids##* }"; wait "${pids##* }"; pids=${pids% *}
"$PY" -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.executescript("PRAGMA foreign_keys=ON; DELETE FROM models; CREATE TRIGGER no_models BEFORE INSERT ON models BEGIN SELECT RAISE(ABORT, \"no models today\"); END;")' "$tmp/nm.db"
cp "$tmp/nm.db" "$tmp/nm2.db"
start nm --db "$tmp/nm.db" --chat-template "$tmp/raw.jinja"
M=$M0
grep -q "the model could not be recorded in the history: .*no models today" "$tmp/nm.log" && ok ||
	bad "start with the model refused: $(cat "$tmp/nm.log")"
body nm "{\"model\": \"aidreams260K-f32\", \"prompt\": \"$prompt\", \"max_tokens\": 4}"
nmreq() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$tmp/nm" \
	"http://127.0.0.1:$port/v1/completions"; }
check "a reply while the model is refused" 200 "$(nmreq)"
i=0
while ! grep -q "#1: not recorded in the history: its model could not be recorded: .*no models today" "$tmp/nm.log" &&
	[ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
"$PY" -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.execute("DROP TRIGGER no_models"); d.commit()' "$tmp/nm.db"
# A chmod meanwhile changes the file's status time, not its bytes: still the model loaded.
chmod 444 "$tmp/nmm/aidreams260K-f32.gguf"
check "a reply once the model is taken" 200 "$(nmreq)"
"$PY" - "$tmp/nm.db" > "$tmp/nm.out" <<'EOF2'
import sqlite3, sys, time
end = time.monotonic() + 30
while True:   # the reply is sent before it is recorded
    try:
        rows = sqlite3.connect(sys.argv[1]).execute("SELECT g.model_id IS NOT NULL, m.file_name FROM generations g "
                                                     "LEFT JOIN models m ON m.id = g.model_id").fetchall()
    except sqlite3.Error:
        rows = []
    if rows or time.monotonic() > end:
        break
    time.sleep(0.05)
print(rows)
EOF2
check "the history: only the reply made once the model was recorded, with it" "[(1, 'aidreams260K-f32.gguf')]" \
	"$(cat "$tmp/nm.out")"
# Other bytes put in its place before the model could be recorded: no reply is recorded with them.
M="$tmp/nmm2/aidreams260K-f32.gguf"
start nm2 --db "$tmp/nm2.db" --chat-template "$tmp/raw.jinja"
M=$M0
"$PY" -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.execute("DROP TRIGGER no_models"); d.commit()' "$tmp/nm2.db"
cp "$tmp/nmm2/aidreams260K-f32.gguf" "$tmp/nmm2/new" && printf 'x' >> "$tmp/nmm2/new" && mv "$tmp/nmm2/new" "$tmp/nmm2/aidreams260K-f32.gguf"
check "a reply after the model file was replaced" 200 "$(nmreq)"
i=0
while ! grep -q "#1: not recorded in the history: its model could not be recorded: the model file changed on disk" \
	"$tmp/nm2.log" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "#1: not recorded in the history: its model could not be recorded: the model file changed on disk" "$tmp/nm2.log" &&
	ok || bad "a replaced model file: $(cat "$tmp/nm2.log")"
check "a replaced model file: nothing recorded" "0 0" "$("$PY" -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); print(d.execute("SELECT count(*) FROM generations").fetchone()[0], d.execute("SELECT count(*) FROM models").fetchone()[0])' "$tmp/nm2.db")"

# --no-history stores nothing.
start nohist --no-history --chat-template "$tmp/raw.jinja"
NH=$port
curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary "@$tmp/c1" "http://127.0.0.1:$NH/v1/chat/completions"
[ ! -e "$XDG_DATA_HOME/natter/natter.db" ] && ok || bad "--no-history created the default database"

# Usage errors, a port in use, a missing key variable.
"$NATTER_BIN" serve 2>/dev/null; check "serve without -m" 2 $?
"$NATTER_BIN" serve -m "$M" --api-key-env NATTER_NO_SUCH_VARIABLE 2>"$tmp/e1"; check "missing key variable" 2 $?
grep -q "NATTER_NO_SUCH_VARIABLE: that environment variable is not set" "$tmp/e1" && ok || bad "missing key message: $(cat "$tmp/e1")"
"$NATTER_BIN" serve -m "$M" --port "$P" --no-history 2>"$tmp/e2"; check "port in use" 1 $?
grep -q "cannot listen on 127.0.0.1 port $P: Address already in use" "$tmp/e2" && ok || bad "port in use message: $(cat "$tmp/e2")"

# A server stopped under a stream tells its client (503 error event, then [DONE]): the reply
# does not simply end as if it were whole.
# (Started as the others; taken out of $pids: it is stopped here.)
start shut --no-history --chat-template "$tmp/raw.jinja" -c 128 --token-delay 50
SHUT=$port
shut_pid=${pids##* }
pids=${pids% *}
body shut "{\"model\": \"aidreams260K-f32\", \"prompt\": \"$prompt\", \"max_tokens\": 100, \"stream\": true}"
# (the file made first: the background curl's shell may open it after the wait below starts)
: >"$tmp/shut.out"
curl -s -N -H 'Content-Type: application/json' --data-binary "@$tmp/shut" "http://127.0.0.1:$SHUT/v1/completions" \
	>>"$tmp/shut.out" &
shut_curl=$!
i=0
while [ "$(grep -c '^data: ' "$tmp/shut.out")" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$shut_pid"
wait "$shut_pid"; check "stopped under a stream: exit status" 0 $?
wait "$shut_curl"
grep -q '"the server is shutting down: the reply was cut off after [0-9]* tokens"' "$tmp/shut.out" &&
	[ "$(tail -n 2 "$tmp/shut.out" | head -n 1)" = "data: [DONE]" ] && ok ||
	bad "the stream stopped by the shutdown did not say so: $(tail -c 600 "$tmp/shut.out")"
grep -q "stopped after [0-9]* generated tokens: the server is shutting down" "$tmp/shut.log" && ok ||
	bad "the log does not say the shutdown stopped it: $(cat "$tmp/shut.log")"

# A client still sending its body when the server stops: the server does not wait for it (it has
# nothing to answer yet), exits cleanly, and the client's connection is closed.
start midbody --no-history -c 128
mid_pid=${pids##* }
pids=${pids% *}
: >"$tmp/midbody.out"
"$PY" - "$port" "$tmp/midbody.ready" > "$tmp/midbody.out" <<'EOF2' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
s.sendall(b"GET")   # (nothing to read yet: the request's headers are in)
open(sys.argv[2], "w").close()
try:
    print("closed" if s.recv(65536) == b"" else "answered")
except OSError as e:
    print("closed" if "reset" in str(e) else "error " + str(e))
EOF2
mid_py=$!
i=0
while [ ! -e "$tmp/midbody.ready" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$mid_pid"
wait "$mid_pid"; check "stopped with a request's body half sent: exit status" 0 $?
wait "$mid_py"
check "that client's connection closed" closed "$(cat "$tmp/midbody.out")"

# SIGTERM stops the server cleanly.
for p in $pids; do kill -TERM "$p" 2>/dev/null; done
for p in $pids; do wait "$p"; check "server exit status after SIGTERM" 0 $?; done
pids=
grep -q "natter serve: stopping" "$tmp/main.log" && ok || bad "no stop line"

# The key never appears in the logs, the databases, the configuration or any output.
if grep -rqF "$key" "$tmp" --exclude-dir=npm; then
	bad "the API key appears in: $(grep -rlF "$key" "$tmp" --exclude-dir=npm)"
else
	ok
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
