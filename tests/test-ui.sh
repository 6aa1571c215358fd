#!/bin/sh
# test-ui.sh -- drives the real natter in a detached tmux and reads the screen.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
M="$NATTER_FIXTURES/models/aidreams260K-f32.gguf"
if ! command -v tmux >/dev/null 2>&1; then echo "SKIP: tmux not installed"; exit 77; fi
if [ ! -f "$M" ]; then echo "SKIP: fixtures not found"; exit 77; fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
sock="natter-test-$$"
T() { tmux -L "$sock" "$@"; }
cleanup() { T kill-server 2>/dev/null; rm -rf "$tmp"; }
stop() { T kill-server 2>/dev/null; sleep 0.3; }
trap cleanup EXIT
screen() { T capture-pane -t ui -p; }
# wait_for PATTERN [SECONDS]: until the screen shows PATTERN (a grep -E expression)
wait_for() {
	i=0
	while [ $i -lt $(( ${2:-10} * 10 )) ]; do
		screen 2>/dev/null | grep -Eq "$1" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
export NATTER_DB="$tmp/ui.db" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" LANG=C.UTF-8 LC_ALL=C.UTF-8
start() { # start COLS ROWS EXTRA-ENV EXTRA-ARGS
	# The inner shell writes its pid and becomes natter (exec), so the
	# signals below reach natter itself, not the wrapper or tmux.
	T new-session -d -s ui -x "$1" -y "$2" \
	    "env $3 sh -c 'stty -g > $tmp/stty.before; sh -c \"echo \\\$\\\$ > $tmp/pid; exec \\\"$NATTER_BIN\\\" -m \\\"$M\\\" --seed 3 $4\"; echo \$? > $tmp/status; stty -g > $tmp/stty.after'; sleep 60"
}

# 1. The three panes appear.
start 100 30 "" "--token-delay 40 -n 30 --theme mono"
wait_for "Type a message" && ok || bad "no start screen: $(screen)"
screen | grep -q "Parameters" && screen | grep -q "Statistics" && screen | grep -q "Conversation" && ok || bad "panes"
screen | grep -q "Enter send" && ok || bad "footer"

# 2. A message; the reply streams; the temperature changes while it does.
T send-keys -t ui "Tell me a dream" Enter
wait_for "state +generating" 5 && ok || bad "not generating: $(screen)"
T send-keys -t ui Tab Tab Right
wait_for "temp +0\.85" 3 && ok || bad "temperature did not change"
screen | grep -Eq "state +generating" && ok || bad "the change was not made while the reply streamed"
wait_for "state +done" 10 && ok || bad "reply did not finish: $(screen)"
screen | grep -Eq "reply +30 tokens" && ok || bad "statistics: reply tokens"
screen | grep -Eq "generation +[1-9][0-9.]* tok/s" && ok || bad "statistics: generation speed"
screen | grep -Eq "first tok +[0-9]+ ms" && ok || bad "statistics: time to first token"
screen | grep -Eq "[0-9]+ / 128" && ok || bad "statistics: context used"
screen | grep -q "Assistant:" && ok || bad "reply in the conversation pane"

# 3. Rate the reply (conversation focus), and find the rating in the database.
T send-keys -t ui Tab Tab "+"
wait_for "rated the last reply up" 3 && ok || bad "rating notice: $(screen)"
"$NATTER_BIN" history show 1 | grep -q "rated up" && ok || bad "rating not in the database"
"$NATTER_BIN" history show 1 | grep -q "temp 0.85" && ok || bad "the stored generation lacks the new temperature"

# 4. CJK text is measured by display width.
T send-keys -t ui Escape   # focus back to the input line
sleep 0.2
T send-keys -t ui "你好，世界" Enter
wait_for "你好，世界" 5 && ok || bad "CJK message not shown"
wait_for "state +done" 10 && ok || bad "second reply"

# 5. Resize to 20x5 and back: natter keeps running and redraws.
T resize-window -t ui -x 20 -y 5
sleep 0.5
w=$(screen | wc -L | tr -d ' ')   # display columns, wide characters counted twice
[ "$w" -le 20 ] && ok || bad "20x5 screen has lines of $w columns"
T resize-window -t ui -x 1 -y 1
sleep 0.3
T resize-window -t ui -x 100 -y 30
wait_for "Parameters" 3 && ok || bad "no redraw after resizing back: $(screen)"
[ ! -f "$tmp/status" ] && ok || bad "natter exited on resize (status $(cat "$tmp/status"))"

# 6. Help, then quit: status 0 and the terminal modes as they were.
T send-keys -t ui F1
wait_for "natter keys" 3 && ok || bad "F1 help"
T send-keys -t ui q
T send-keys -t ui F10
i=0; while [ ! -f "$tmp/stty.after" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(cat "$tmp/status" 2>/dev/null)" = 0 ] && ok || bad "quit status $(cat "$tmp/status" 2>/dev/null)"
cmp -s "$tmp/stty.before" "$tmp/stty.after" && ok || bad "terminal modes not restored after F10"
stop

# 7. SIGTERM, SIGHUP and a crash (SIGSEGV) also restore the terminal.
for sig in TERM HUP SEGV; do
	rm -f "$tmp/status" "$tmp/stty.after" "$tmp/pid"
	start 80 24 "" ""
	wait_for "Type a message" && ok || bad "restart for SIG$sig"
	kill -$sig "$(cat "$tmp/pid")" || bad "no natter to signal"
	i=0; while [ ! -f "$tmp/stty.after" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
	cmp -s "$tmp/stty.before" "$tmp/stty.after" && ok ||
	    bad "terminal modes not restored after SIG$sig (status $(cat "$tmp/status" 2>/dev/null || echo none); modes $( [ -f "$tmp/stty.after" ] && echo differ || echo 'never read'))"
	stop
done

# 8. NO_COLOR: no colour in the escape sequences; the default theme has some.
start 80 24 "" ""
wait_for "Type a message" && ok || bad "start for colours"
T capture-pane -t ui -e -p | grep -q "$(printf '\033')\[[0-9;]*3[0-7]m" && ok || bad "the default theme shows no colour"
stop
start 80 24 "NO_COLOR=1" ""
wait_for "Type a message" && ok || bad "start with NO_COLOR"
T capture-pane -t ui -e -p | grep -q "$(printf '\033')\[[0-9;]*3[0-7]m" && bad "NO_COLOR still shows colours" || ok
stop

# 9. A missing model: a clear message, no screen taken.
"$NATTER_BIN" -m "$tmp/none.gguf" 2>"$tmp/err"; [ $? -eq 1 ] && ok || bad "missing model status"
grep -q "cannot open" "$tmp/err" && grep -q "Get a GGUF model" "$tmp/err" && ok || bad "missing model message: $(cat "$tmp/err")"

# 10. Not a terminal, or an unknown one: a clear message, no screen taken.
"$NATTER_BIN" -m "$M" < /dev/null > "$tmp/out" 2>"$tmp/err"; [ $? -eq 2 ] && ok || bad "no terminal status"
grep -q "needs a terminal" "$tmp/err" && ok || bad "no terminal message: $(cat "$tmp/err")"

# 11. No -m: the models folder is listed (here with two models in it).
mkdir -p "$tmp/xd/natter/models"
cp "$M" "$tmp/xd/natter/models/one.gguf"
cp "$M" "$tmp/xd/natter/models/two.gguf"
XDG_DATA_HOME="$tmp/xd" "$NATTER_BIN" 2>"$tmp/err"; [ $? -eq 2 ] && ok || bad "no model status"
grep -q "one.gguf" "$tmp/err" && grep -q "two.gguf" "$tmp/err" && ok || bad "models folder not listed: $(cat "$tmp/err")"

echo "test-ui.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
