#!/bin/sh
# test-remote-ui.sh -- the full screen over a remote engine, in a detached tmux: a reply streams
# from the replay server (tests/remote-server.py), Esc closes the stream (the server sees the
# client leave), the statistics pane shows the remote figures, a refused field shows as not sent,
# a failed request leaves the message for F5.
: "${NATTER_BIN:=./natter}"
: "${NATTER_SRCDIR:=.}"
if ! command -v tmux >/dev/null 2>&1; then echo "SKIP: tmux not installed"; exit 77; fi
for tool in sqlite3 python3; do
	if ! command -v $tool >/dev/null 2>&1; then echo "SKIP: $tool not installed"; exit 77; fi
done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
sock="natter-remote-$$"
srv=
T() { tmux -L "$sock" "$@"; }
cleanup() { T kill-server 2>/dev/null; [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export NATTER_DB="$tmp/ui.db" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" HOME="$tmp" \
	LANG=C.UTF-8 LC_ALL=C.UTF-8
unset OPENAI_API_KEY

# until_ok CMD...: every 0.05 s until CMD succeeds or $DEADLINE seconds (default 10) pass.
until_ok() {
	i=0
	while [ $i -lt $(( ${DEADLINE:-10} * 20 )) ]; do
		"$@" && return 0
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}
screen() { T capture-pane -t ui -p 2>/dev/null; }
shows() { screen | grep -Eq -- "$1"; }
wait_for() { DEADLINE=${2:-10} until_ok shows "$1"; }
q() { sqlite3 "$NATTER_DB" "$1" 2>/dev/null; }
no_server() { ! T has-session 2>/dev/null; }
stop() { T kill-server 2>/dev/null; DEADLINE=5 until_ok no_server; }
# start MODEL [ARGS]: natter --remote on the replay server, in a 110x32 terminal.
start() {
	stop
	for try in 1 2 3; do
		T new-session -d -s ui -x 110 -y 32 \
		    "env sh -c 'exec \"$NATTER_BIN\" --remote $URL -m $1 --theme mono $2; '; sleep 60" && break
		DEADLINE=2 until_ok no_server
	done
}

"$PY" "$NATTER_SRCDIR/tests/remote-server.py" --dir "$NATTER_SRCDIR/tests/data/remote" --portfile "$tmp/port" \
	--log "$tmp/replay.log" &
srv=$!
have_port() { [ -s "$tmp/port" ]; }
until_ok have_port || { bad "the replay server did not start"; exit 1; }
R=$(cat "$tmp/port")
URL="http://127.0.0.1:$R"

# 1. The panes say what answers: the model and where it runs; the context is the server's.
start slow
wait_for "Type a message" && ok || bad "no start screen: $(screen)"
shows "│ slow *$" && shows "│ remote 127\.0\.0\.1:$R/v1 *$" && ok || bad "model lines: $(screen)"
shows "context +unknown" && ok || bad "context line: $(screen)"

# 2. A reply streams; Esc closes the stream: the reply stops, the server sees the client leave,
# the part that came is kept, marked as stopped.
T send-keys -t ui "Tell me a long story" Enter
wait_for "word3 " 10 && ok || bad "the reply did not stream: $(screen)"
shows "state +generating" && ok || bad "not generating while it streams: $(screen)"
# The temperature changes while the reply streams: the request already went with 0.80.
T send-keys -t ui Tab Tab Right
both() { cap=$(screen); echo "$cap" | grep -Eq "temp +0\.85" && echo "$cap" | grep -Eq "state +generating"; }
DEADLINE=10 until_ok both && ok || bad "the temperature did not change while the reply streamed: $(screen)"
T send-keys -t ui Escape
wait_for "state +stopped" 10 && ok || bad "Esc did not stop the reply: $(screen)"
left() { grep -q '"model": "slow".*"outcome": "client left after' "$tmp/replay.log" 2>/dev/null; }
DEADLINE=10 until_ok left && ok || bad "the server did not see the client leave: $(cat "$tmp/replay.log")"
stored=$(q "SELECT end_reason || '|' || content FROM generations ORDER BY id DESC LIMIT 1")
case "$stored" in
stopped\|word0\ word1\ word2\ word3\ *) ok ;;
*) bad "the stopped reply is stored as [$stored]" ;;
esac
words=$(q "SELECT length(content) - length(replace(content, ' ', '')) FROM generations ORDER BY id DESC LIMIT 1")
[ "$words" -lt 200 ] && ok || bad "the whole reply arrived ($words words): the stream was not closed"
# No usage came with the stopped stream: the pieces that arrived are counted, and said to be.
shows "reply +[1-9][0-9]* pieces" && shows "context +unknown" && ok || bad "stats after the stop: $(screen)"
[ "$(q "SELECT md.kind || ' ' || md.endpoint FROM generations g JOIN models md ON md.id = g.model_id")" = "remote $URL/v1" ] &&
	ok || bad "the generation does not record the endpoint"
# Recorded with what its request was sent with; the next request gets the new temperature.
[ "$(q "SELECT round(temp, 2) FROM generations ORDER BY id DESC LIMIT 1")" = "0.8" ] && ok ||
	bad "the stopped reply records temp $(q "SELECT temp FROM generations ORDER BY id DESC LIMIT 1"), not the 0.8 it was sent with"
T send-keys -t ui "Again" Enter
wait_for "state +generating" 10 || bad "the second reply did not start: $(screen)"
# Text has come (the pane counts it while the reply runs): the request reached the server.
wait_for "reply +[1-9][0-9]* tokens" 10 || bad "the second reply did not stream: $(screen)"
T send-keys -t ui Escape
wait_for "state +stopped" 10 && ok || bad "Esc did not stop the second reply: $(screen)"
slow2() { [ "$(grep -c '"model": "slow"' "$tmp/replay.log")" -ge 2 ]; }
DEADLINE=10 until_ok slow2 || bad "the second request is not in the server's log"
temps=$("$PY" -c '
import json, sys
print(" ".join(str(json.loads(l)["temperature"]) for l in open(sys.argv[1]) if json.loads(l).get("model") == "slow"))' "$tmp/replay.log")
[ "$temps" = "0.8 0.85" ] && ok || bad "the temperatures sent: [$temps]"
[ "$(q "SELECT round(temp, 2) FROM generations ORDER BY id DESC LIMIT 1")" = "0.85" ] && ok || bad "the second reply's temperature"

# 3. The server's own figures in the statistics pane (llama-server's usage and timings).
start llama-server
wait_for "Type a message" || bad "second start: $(screen)"
T send-keys -t ui "Fold stars" Enter
wait_for "state +done" 10 && ok || bad "llama-server reply: $(screen)"
shows "Stars fold into paper boats\." && ok || bad "reply text: $(screen)"
shows "generation +100\.0 tok/s" && shows "prompt +197\.5 tok/s" && shows "reply +6 tokens" && ok ||
	bad "the server's figures: $(screen)"
shows "first tok +[0-9]+ ms" && ok || bad "time to first token: $(screen)"

# 4. A server that refuses the extra fields: they show as not sent.
start strict
wait_for "Type a message" || bad "third start: $(screen)"
shows "top_k +40 *$" && ok || bad "top_k before: $(screen)"
T send-keys -t ui "Hello" Enter
wait_for "state +done" 10 && ok || bad "strict reply: $(screen)"
shows "top_k +40 \(not sent\)" && shows "repeat_penalty 1\.00 \(not sent\)" && shows "temp +0\.80 *$" && ok ||
	bad "not-sent parameters: $(screen)"

# 5. A request the server refuses: the message stays, F5 sends it again.
start ratelimit
wait_for "Type a message" || bad "fourth start: $(screen)"
T send-keys -t ui "Please" Enter
wait_for "no reply \(F5 sends your message again\): the server is limiting requests \(429" 10 && ok ||
	bad "429 notice: $(screen)"
shows "^  Please" && ok || bad "the message is not kept on screen: $(screen)"
n1=$(grep -c '"model": "ratelimit"' "$tmp/replay.log")
T send-keys -t ui F5
sent_again() { [ "$(grep -c '"model": "ratelimit"' "$tmp/replay.log")" -gt "$n1" ]; }
DEADLINE=10 until_ok sent_again && ok || bad "F5 did not send the message again"
[ "$(q "SELECT count(*) FROM messages WHERE content = 'Please'")" = 1 ] && ok || bad "the message was stored twice or not at all"

# 6. A message the server refuses even alone: withdrawn from the conversation and the history
# (saved before it was sent), back in the input line.
start overflow-long
wait_for "Type a message" || bad "fifth start: $(screen)"
T send-keys -t ui "Hi" Enter
wait_for "state +done" 10 && ok || bad "overflow-long first reply: $(screen)"
T send-keys -t ui "This message is far too long for the server" Enter
wait_for "the message alone is too long" 10 && ok || bad "the refusal not shown: $(screen)"
shows "> This message is far too long" && ok || bad "the message is not back in the input line: $(screen)"
[ "$(q "SELECT count(*) FROM messages WHERE content LIKE 'This message%'")" = 0 ] && ok ||
	bad "the refused message stays in the history"
leaf_of_hi="SELECT m.role FROM conversations c JOIN messages m ON m.id = c.leaf_id WHERE c.id =
	(SELECT conversation_id FROM messages WHERE content = 'Hi' ORDER BY id DESC LIMIT 1)"
[ "$(q "$leaf_of_hi")" = assistant ] && ok || bad "the conversation's leaf is not its reply: $(q "$leaf_of_hi")"

stop
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
