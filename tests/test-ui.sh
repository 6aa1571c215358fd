#!/bin/sh
# test-ui.sh -- drives the real natter in a detached tmux, reads the screen and the database.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
M="$NATTER_FIXTURES/models/aidreams260K-f32.gguf"
if ! command -v tmux >/dev/null 2>&1; then echo "SKIP: tmux not installed"; exit 77; fi
if ! command -v sqlite3 >/dev/null 2>&1; then echo "SKIP: sqlite3 not installed"; exit 77; fi
if [ ! -f "$M" ]; then echo "SKIP: fixtures not found"; exit 77; fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
sock="natter-test-$$"
T() { tmux -L "$sock" "$@"; }
cleanup() { T kill-server 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export NATTER_DB="$tmp/ui.db" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" LANG=C.UTF-8 LC_ALL=C.UTF-8

# --- polling, never sleeping in place of a condition ---
# until CMD... : runs CMD every 0.05 s until it succeeds or $DEADLINE
# seconds (default 10) have passed; returns its last status.
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
lacks() { ! screen | grep -Eq -- "$1"; }
# wait_for PATTERN [SECONDS]: until the screen shows PATTERN (grep -E)
wait_for() { DEADLINE=${2:-10} until_ok shows "$1"; }
# wait_gone PATTERN [SECONDS]: until the screen no longer shows it
wait_gone() { DEADLINE=${2:-10} until_ok lacks "$1"; }
q() { sqlite3 "$NATTER_DB" "$1" 2>/dev/null; }
sql_is() { [ "$(q "$1")" = "$2" ]; }
# wait_sql QUERY VALUE [SECONDS]: until the database answers VALUE
wait_sql() { DEADLINE=${3:-10} until_ok sql_is "$1" "$2"; }
# Non-empty: the shell creates a redirection's file before the command writes it.
have() { [ -s "$1" ]; }
wait_file() { DEADLINE=${2:-15} until_ok have "$1"; }
no_server() { ! T has-session 2>/dev/null; }
stop() { T kill-server 2>/dev/null; DEADLINE=5 until_ok no_server; }
footer() { screen | tail -n 1; }

# new_session NAME COLS ROWS CMD: a detached session running CMD.  When
# the last session was just killed, the server may still be going away
# and refuse the client ("server exited unexpectedly"): wait until it is
# gone and try again.
new_session() {
	for try in 1 2 3 4 5; do
		T new-session -d -s "$1" -x "$2" -y "$3" "$4" 2>/dev/null && return 0
		DEADLINE=2 until_ok no_server
	done
	echo "tmux refused a new session five times" >&2
	return 1
}

start() { # start COLS ROWS EXTRA-ENV EXTRA-ARGS [MODEL]
	rm -f "$tmp/status" "$tmp/stty.after" "$tmp/pid"
	# The inner shell writes its pid and becomes natter (exec), so that
	# signals reach natter itself, not the wrapper or tmux.
	# A server that is still going away can refuse the first try.
	new_session ui "$1" "$2" \
	    "env $3 sh -c 'stty -g > $tmp/stty.before; sh -c \"echo \\\$\\\$ > $tmp/pid; exec \\\"$NATTER_BIN\\\" -m \\\"${5:-$M}\\\" --seed 3 $4\"; echo \$? > $tmp/status; stty -g > $tmp/stty.after'; sleep 60"
	# Pastes need natter's bracketed paste; OSC 52 fills a tmux buffer.
	T set-option -g set-clipboard on
}
# fresh DB COLS ARGS FIRST: natter on a new history DB, COLS wide, with
# ARGS; FIRST sent and its reply stored.
fresh() {
	NATTER_DB="$1"
	start "$2" 30 "NATTER_DB=$NATTER_DB" "$3"
	wait_for "Type a message" || bad "start with $1: $(screen)"
	T send-keys -t ui "$4" Enter
	wait_sql "SELECT count(*) FROM generations" 1 20 && wait_for "state +done" 10 || bad "first reply in $1: $(screen)"
}
# lock_history / unlock_history: sqlite3 holds the history's write lock
# (BEGIN IMMEDIATE, through a FIFO) until unlock_history commits.
lock_history() {
	rm -f "$tmp/lock.in" "$tmp/lock.out"
	mkfifo "$tmp/lock.in" "$tmp/lock.out"
	sqlite3 "$NATTER_DB" < "$tmp/lock.in" > "$tmp/lock.out" &
	locker=$!
	exec 6> "$tmp/lock.in"
	echo "BEGIN IMMEDIATE; SELECT 'locked';" >&6
	read -r locked < "$tmp/lock.out"
	[ "$locked" = locked ] || bad "the history was not locked"
}
unlock_history() {
	echo "COMMIT;" >&6
	exec 6>&-
	wait $locker
}
# in_tty NAME ENV CMD: runs CMD on a terminal (a tmux pane), stderr to
# $tmp/NAME.err, status to $tmp/NAME.status.
in_tty() {
	rm -f "$tmp/$1.status"
	new_session "$1" 80 24 "env $2 sh -c '$3 2> $tmp/$1.err; echo \$? > $tmp/$1.status'; sleep 60"
	wait_file "$tmp/$1.status" 20
}

# 1. The three panes appear; the model's type has a line of its own.
start 100 30 "" "--token-delay 40 -n 60 --theme mono"
wait_for "Type a message" && ok || bad "no start screen: $(screen)"
shows "Parameters" && shows "Statistics" && shows "Conversation" && ok || bad "panes"
shows "Enter send" && ok || bad "footer"
shows "│ aidreams260K-f32.gguf *$" && shows "│ llama F32 *$" && ok || bad "model file and type lines: $(screen)"

# 2. A message; the reply streams; the temperature changes while it does.
T send-keys -t ui "Tell me a dream" Enter
wait_for "state +generating" 10 && ok || bad "not generating: $(screen)"
# Once tokens have come: the change lands inside the reply.
wait_for "reply +[1-9][0-9]* tokens" 10 && ok || bad "no tokens counted while streaming: $(screen)"
T send-keys -t ui Tab Tab Right
both() { cap=$(screen); echo "$cap" | grep -Eq "temp +0\.85" && echo "$cap" | grep -Eq "state +generating"; }
# One screen shows both: the new temperature while the reply streams.
DEADLINE=10 until_ok both && ok || bad "the temperature did not change while the reply streamed: $(screen)"
wait_for "state +done" 10 && ok || bad "reply did not finish: $(screen)"
# The reply's tokens (the changed temperature may end it before -n 60): checked against
# the stored count once the rating below shows the reply stored.
shown_gen=$(screen | grep -Eo "reply +[0-9]+ tokens" | grep -Eo "[0-9]+")
[ -n "$shown_gen" ] && [ "$shown_gen" -gt 0 ] && ok || bad "statistics: reply tokens: $(screen)"
shows "generation +[1-9][0-9.]* tok/s" && ok || bad "statistics: generation speed"
shows "prompt +[1-9][0-9.]* tok/s" && ok || bad "statistics: prompt speed"
shows "first tok +[0-9]+ ms" && ok || bad "statistics: time to first token"
shows "[0-9]+ / 128" && ok || bad "statistics: context used"
shows "Assistant:" && ok || bad "reply in the conversation pane"

# 3. Rate the reply (conversation focus), and find the rating in the database.
T send-keys -t ui Tab Tab "+"
wait_for "rated generation 1 up" 10 && ok || bad "rating notice: $(screen)"
sql_is "SELECT n_gen FROM generations WHERE id = 1" "$shown_gen" && ok || bad "statistics: reply tokens $shown_gen, stored $(q 'SELECT n_gen FROM generations WHERE id = 1')"
"$NATTER_BIN" history show 1 | grep -q "rated up" && ok || bad "rating not in the database"
# The temperature changed inside the reply: neither value made all of it.
"$NATTER_BIN" history show 1 | grep -q "temp ? top_p 0.95" && ok || bad "the stored generation does not say its temperature changed: $("$NATTER_BIN" history show 1)"

# 4. In the conversation focus, keys that are no shortcut type into the
# input line: the r of "great work" regenerates nothing.
T send-keys -t ui "great work"
wait_for "^> great work" 10 && ok || bad "typed text did not reach the input line: $(screen)"
shows "state +done" && sql_is "SELECT count(*) FROM generations" 1 && ok ||
    bad "a typed word ran shortcuts: $(screen)"
T send-keys -t ui C-u
wait_for "^> *$" 10 && ok || bad "input line not cleared"

# 5. A line of blanks is not a message.
T send-keys -t ui "   " Enter
wait_for "empty message is not sent" 10 && ok || bad "blank line: no notice: $(screen)"
sql_is "SELECT count(*) FROM messages WHERE role = 'user'" 1 && ok || bad "a blank line was sent as a message"
T send-keys -t ui C-u

# 6. CJK text is measured by display width.
T send-keys -t ui "你好，世界" Enter
wait_for "你好，世界" 10 && ok || bad "CJK message not shown"
# The screen's "state done" may still be the first reply's: the stored
# generation (written when a reply ends) says this one has ended.
wait_sql "SELECT count(*) FROM generations" 2 20 && wait_for "state +done" 10 && ok || bad "second reply"

# 7. A three-line bracketed paste is one message, newlines and all.
T set-buffer -b p "line one
line two
line three"
T paste-buffer -p -b p -t ui
wait_for "^line three" 10 && ok || bad "paste not in the input line: $(screen)"
shows "^> line one" && shows "^line two" && ok || bad "pasted lines missing: $(screen)"
sql_is "SELECT count(*) FROM messages WHERE role = 'user'" 2 && ok || bad "the paste was sent line by line"
T send-keys -t ui Enter
wait_sql "SELECT content FROM messages WHERE role = 'user' ORDER BY id DESC LIMIT 1" "line one
line two
line three" 5 && ok || bad "pasted message stored as: $(q "SELECT content FROM messages WHERE role = 'user'")"
wait_sql "SELECT count(*) FROM generations" 3 20 && wait_for "state +done" 10 && ok || bad "reply to the paste"

# 8. y in the conversation copies the last reply through OSC 52.
T send-keys -t ui Tab y
wait_for "copied the reply" 10 && ok || bad "copy notice: $(screen)"
reply=$(q "SELECT g.content FROM generations g WHERE g.chosen ORDER BY g.id DESC LIMIT 1")
[ -n "$reply" ] && [ "$(T show-buffer 2>/dev/null)" = "$reply" ] && ok ||
    bad "clipboard holds '$(T show-buffer 2>/dev/null)', the reply is '$reply'"
T send-keys -t ui Escape
wait_for "Enter send" 10 || bad "focus not back on the input line"

# 8b. Alternatives: F5 makes a second one ("2/2"); Left shows the first,
# Enter makes it the chosen reply in the database.
msg=$(q "SELECT message_id FROM generations ORDER BY id DESC LIMIT 1")
T send-keys -t ui F5
wait_for "state +generating" 10 || bad "F5 did not regenerate"
wait_for "state +done" 20 && ok || bad "regeneration did not finish"
wait_for "^Assistant \(2/2\):" 10 && ok || bad "no 2/2 on the regenerated reply: $(screen)"
first=$(q "SELECT min(id) FROM generations WHERE message_id = $msg")
sql_is "SELECT id FROM generations WHERE message_id = $msg AND chosen" "$(q "SELECT max(id) FROM generations WHERE message_id = $msg")" &&
    ok || bad "the new alternative is not the chosen one"
T send-keys -t ui Tab Left
wait_for "^Assistant \(1/2\), not chosen:" 10 && ok || bad "Left did not show alternative 1: $(screen)"
# y copies the alternative shown, not the chosen one.
a1=$(q "SELECT content FROM generations WHERE id = $first")
a2=$(q "SELECT content FROM generations WHERE message_id = $msg AND chosen")
[ "$a1" != "$a2" ] && ok || bad "the two alternatives are one text: the copy below cannot tell them apart"
T send-keys -t ui y
wait_for "copied the reply" 10 && [ "$(T show-buffer 2>/dev/null)" = "$a1" ] && ok ||
    bad "y on alternative 1 copied '$(T show-buffer 2>/dev/null)', not '$a1'"
T send-keys -t ui Enter
wait_for "alternative 1 of 2 is the chosen reply" 10 && ok || bad "Enter did not pick it: $(screen)"
wait_for "^Assistant \(1/2\):" 10 && ok || bad "header after picking: $(screen)"
sql_is "SELECT id FROM generations WHERE message_id = $msg AND chosen" "$first" && ok ||
    bad "the chosen generation in the database is $(q "SELECT id FROM generations WHERE message_id = $msg AND chosen"), not $first"

# 8c. Editing an earlier message branches the conversation: both versions
# stay in the history, the reply answers the new one.
T send-keys -t ui Up
T send-keys -t ui Enter
wait_for "^edit> line one" 10 && ok || bad "Enter on a user message did not edit it: $(screen)"
T send-keys -t ui C-e C-u "an edited question" Enter
wait_for "^  an edited question" 10 && ok || bad "the edit is not shown: $(screen)"
wait_sql "SELECT count(*) FROM generations" 5 20 && wait_for "state +done" 20 && ok || bad "no reply to the edited message"
wait_sql "SELECT count(*) FROM messages WHERE role = 'user' AND content = 'an edited question'" 1 && ok || bad "edit not stored"
sql_is "SELECT count(*) FROM messages WHERE role = 'user' AND content LIKE 'line one%'" 1 && ok || bad "the old version is gone"
sql_is "SELECT count(*) FROM messages a JOIN messages b ON a.parent_id IS b.parent_id WHERE a.content = 'an edited question' AND b.content LIKE 'line one%'" 1 &&
    ok || bad "the two versions are not siblings"
sql_is "SELECT count(*) FROM messages r JOIN messages e ON r.parent_id = e.id WHERE e.content = 'an edited question' AND r.role = 'assistant'" 1 &&
    ok || bad "the reply does not answer the edited message"
lacks "line two" && ok || bad "the old branch is still shown: $(screen)"

# 9. Nothing races with a streaming reply: F3 + Enter, /system and the
# system editor are refused, and both conversations stay as they were.
n1=$(q "SELECT count(*) FROM messages WHERE conversation_id = 1")
T send-keys -t ui F2
wait_for "new conversation" 10 || bad "F2"
T send-keys -t ui "second chat" Enter
wait_for "state +generating" 10 || bad "second chat not generating"
T send-keys -t ui F3
wait_for "history: stop the reply first" 10 && ok || bad "F3 while streaming: $(screen)"
T send-keys -t ui Down Enter
T send-keys -t ui "/system be terse" Enter
wait_for "/system: stop the reply first" 10 && ok || bad "/system while streaming: $(screen)"
T send-keys -t ui C-u Tab Tab Up Up Up Up Up Up Up Up Down Down Down Down Down Down Down Enter
wait_for "system prompt: stop the reply first" 10 && ok || bad "system editor while streaming: $(screen)"
wait_for "state +done" 10 && ok || bad "second chat did not finish: $(screen)"
T send-keys -t ui Escape
wait_for "Enter send" 10 || bad "Esc did not bring the focus back"
wait_sql "SELECT count(*) FROM messages WHERE conversation_id = 2" 2 && ok ||
    bad "conversation 2 has $(q "SELECT count(*) FROM messages WHERE conversation_id = 2") messages"
sql_is "SELECT count(*) FROM messages WHERE conversation_id = 1" "$n1" && ok || bad "conversation 1 changed"
sql_is "SELECT count(*) FROM generations g JOIN messages m ON g.message_id = m.id WHERE m.conversation_id = 2 AND g.chosen AND g.content <> ''" 1 &&
    ok || bad "the reply is not filed under conversation 2"
sql_is "SELECT count(*) FROM conversations WHERE system_prompt IS NOT NULL AND system_prompt <> ''" 0 &&
    ok || bad "a system prompt was set during the reply"

# 9b. The F3 list names each conversation's model(s), beside its title.
T send-keys -t ui F3
wait_for "Past conversations" 10 || bad "F3 after the reply: $(screen)"
[ "$(screen | grep -Ec " [0-9]+ msgs  .*  aidreams260K-f32( |$)")" = 2 ] && ok ||
    bad "the F3 list does not name the model of both conversations: $(screen)"
T send-keys -t ui Escape
wait_gone "Past conversations" 10 || bad "Esc did not close the F3 list"

# 10. 80x24: the footer is whole hints, the help and /stats fit.
T resize-window -t ui -x 80 -y 24
wait_for "^ F1 help  Enter send .*F3 history *$" 10 && ok || bad "80-column footer: '$(footer)'"
T send-keys -t ui F1
wait_for "natter help \(" 10 && ok || bad "F1 help: $(screen)"
shows "Commands:" && shows "/quit, /exit +leave" && lacks " [0-9]+-[0-9]+ of [0-9]+ " && ok ||
    bad "the help does not fit 80x24: $(screen)"
T send-keys -t ui q
wait_gone "natter help \(" 10 || bad "help did not close"
T send-keys -t ui "/stats" Enter
wait_for "stored as generation [0-9]+ of conversation 2" 10 && ok || bad "/stats at 80x24: $(screen)"
T send-keys -t ui q

# 11. Narrow: the side panes are hidden and cannot take the focus; /params
# shows them.
T resize-window -t ui -x 60 -y 24
wait_gone "Parameters" 10 && ok || bad "side panes still shown at 60 columns"
T send-keys -t ui Tab
wait_for "^ F1 help  \+/- rate" 10 && ok || bad "Tab did not reach the conversation: '$(footer)'"
T send-keys -t ui Tab
wait_for "^ F1 help  Enter send" 10 && ok || bad "Tab reached a hidden pane: '$(footer)'"
T send-keys -t ui "/params" Enter
wait_for "temp +0\.85" 10 && shows "repeat_penalty" && ok || bad "/params at 60 columns: $(screen)"
T send-keys -t ui q

# 12. Resize to 20x5, 1x1 and back: natter redraws for each size.
T resize-window -t ui -x 20 -y 5
# tmux reflows the old screen into the new size before natter redraws,
# and the reflowed 100-column footer can start a line with the same hints:
# wait for the whole redrawn screen.
redrawn_20x5() { cap=$(screen); echo "$cap" | sed -n 5p | grep -q "^ F1 help  Enter send$" && echo "$cap" | sed -n 4p | grep -q "^>"; }
DEADLINE=10 until_ok redrawn_20x5 && ok || bad "20x5 footer: $(screen)"
screen | sed -n 4p | grep -q "^>" && ok || bad "20x5 input line: $(screen)"
T resize-window -t ui -x 1 -y 1
wait_gone "F1 help" && ok || bad "no redraw at 1x1: '$(screen)'"
T resize-window -t ui -x 100 -y 30
wait_for "Parameters" 10 && ok || bad "no redraw after resizing back: $(screen)"
[ ! -f "$tmp/status" ] && ok || bad "natter exited on resize (status $(cat "$tmp/status"))"

# 13. Quit: status 0 and the terminal modes as they were.
T send-keys -t ui F10
wait_file "$tmp/stty.after" && ok || bad "F10 did not quit"
[ "$(cat "$tmp/status" 2>/dev/null)" = 0 ] && ok || bad "quit status $(cat "$tmp/status" 2>/dev/null)"
cmp -s "$tmp/stty.before" "$tmp/stty.after" && ok || bad "terminal modes not restored after F10"
stop

# 14. Fenced code is shown unwrapped, clipped, in the code colour.
start 40 24 "" "--token-delay 1 -n 4"
wait_for "Type a message" || bad "start for code"
long=$(printf 'x%.0s' $(seq 1 35))   # wider than the pane, short enough for the context
T set-buffer -b c "see:
\`\`\`
START${long}END
\`\`\`
done"
T paste-buffer -p -b c -t ui
T send-keys -t ui Enter
wait_for "^  START" 10 && ok || bad "code line not shown: $(screen)"
lacks "xEND" && shows "^  STARTx+>$" && ok || bad "code line wrapped instead of clipped: $(screen)"
T capture-pane -t ui -e -p | grep "START" | grep -q "$(printf '\033')\[[0-9;]*36m" && ok ||
    bad "code not in its colour: $(T capture-pane -t ui -e -p | grep START | od -c | head -3)"
# A message longer than the context is refused and comes back to the input line.
wait_sql "SELECT count(*) FROM generations g JOIN messages m ON g.message_id = m.id WHERE m.conversation_id = (SELECT max(id) FROM conversations)" 1 10 ||
    bad "reply to the code"
T set-buffer -b l "$(printf 'y%.0s' $(seq 1 300))"
T paste-buffer -p -b l -t ui
T send-keys -t ui Enter
wait_for "the message is [0-9]+ tokens long" 10 && ok || bad "no refusal: $(screen)"
wait_for "^y{39}$" 10 && ok || bad "the refused message did not come back: $(screen)"
sql_is "SELECT count(*) FROM messages WHERE content LIKE 'yyyy%'" 0 && ok || bad "the refused message was stored"
# One starting with "/" (typed "//") comes back as typed, not as the command
# "/yyy...".  Its refusal names another length: once that shows, the line
# was put back in the same step.
n1=$(screen | sed -n 's/.*the message is \([0-9]*\) tokens long.*/\1/p' | head -n 1)
other_length() { n2=$(screen | sed -n 's/.*the message is \([0-9]*\) tokens long.*/\1/p' | head -n 1); [ -n "$n2" ] && [ "$n2" != "$n1" ]; }
T send-keys -t ui C-u
T set-buffer -b l "//$(printf 'z%.0s' $(seq 1 400))"
T paste-buffer -p -b l -t ui
T send-keys -t ui Enter
DEADLINE=10 until_ok other_length || bad "no refusal of the //message: $(screen)"
T send-keys -t ui C-a   # its start in view
wait_for "^> //z" 10 && ok || bad "the refused //message did not come back as typed: $(screen)"
T send-keys -t ui C-u
stop

# 15. Esc during a long prompt: progress is shown, and it stops mid-prompt.
# A 2-layer model of TinyLlama's shapes reads a 1,500-token prompt in
# about a second per thread (the last layer of a batch without logits
# computes only its keys and values: one layer would be over in a blink);
# Esc comes as soon as the first chunk is in.
# (The first chunk can take a minute under ThreadSanitizer on a loaded
# machine: the wait polls, so a long deadline costs nothing when fast.)
if "$NATTER_BIN" mkmodel --preset llama-1b --type Q4_0 --layers 2 -o "$tmp/big.gguf" >/dev/null 2>&1; then
	start 100 30 "" "-c 2048 -t 1 -n 8" "$tmp/big.gguf"
	wait_for "Type a message" 20 || bad "start with the big model: $(screen)"
	T set-buffer -b long "$(i=0; while [ $i -lt 22 ]; do printf 'the quick brown fox jumps over the lazy dog and '; i=$((i + 1)); done)"
	T paste-buffer -p -b long -t ui
	T send-keys -t ui Enter
	# The progress line and the prompt's speed so far, on one screen.
	progress() { cap=$(screen); echo "$cap" | grep -Eq "prompt +[1-9][0-9,]* / [0-9,]+" &&
	    echo "$cap" | grep -Eq "prompt +[1-9][0-9.]* tok/s"; }
	DEADLINE=90 until_ok progress && ok || bad "no prompt progress with a live speed: $(screen)"
	T send-keys -t ui Escape
	wait_for "state +stopped" 60 && ok || bad "Esc did not stop the prompt: $(screen)"
	# The stored generation tells how far the prompt got.
	done_n=$(q "SELECT n_prompt FROM generations ORDER BY id DESC LIMIT 1")
	state=$(q "SELECT state FROM generations ORDER BY id DESC LIMIT 1")
	[ "$state" = cancelled ] && [ -n "$done_n" ] && [ "$done_n" -lt 1400 ] && ok ||
	    bad "the prompt was not stopped early: state $state, $done_n tokens read"
	[ "$(q "SELECT n_gen FROM generations ORDER BY id DESC LIMIT 1")" = 0 ] && ok || bad "tokens generated after Esc"
	stop
else
	bad "mkmodel for the prompt test"
fi

# 16. SIGTERM and SIGHUP exit as killed (128 + signal); they and a crash
# (SIGSEGV) put the terminal back: modes, main screen, cursor, no mouse.
for sig in TERM HUP SEGV; do
	start 80 24 "" ""
	wait_for "Type a message" && ok || bad "restart for SIG$sig"
	kill -$sig "$(cat "$tmp/pid")" || bad "no natter to signal"
	wait_file "$tmp/stty.after" || bad "SIG$sig: natter did not end"
	cmp -s "$tmp/stty.before" "$tmp/stty.after" && ok ||
	    bad "terminal modes not restored after SIG$sig (status $(cat "$tmp/status" 2>/dev/null || echo none)): $(cat "$tmp/stty.before") then $(cat "$tmp/stty.after" 2>/dev/null)"
	flags=$(T display-message -p -t ui '#{alternate_on} #{cursor_flag} #{mouse_any_flag}')
	[ "$flags" = "0 1 0" ] && ok || bad "after SIG$sig: alternate screen, cursor, mouse = $flags"
	case $sig in
	TERM) want=143 ;; HUP) want=129 ;; SEGV) want=139 ;;
	esac
	[ "$(cat "$tmp/status")" = $want ] && ok || bad "SIG$sig: status $(cat "$tmp/status"), not $want"
	stop
done

# 17. NO_COLOR: no colour in the escape sequences; the default theme has some.
# (Started with a context longer than the model was trained on: the full
# screen warns as chat --plain does.)
start 80 24 "" "-c 256"
wait_for "Type a message" && ok || bad "start for colours"
wait_for "a context of 256 tokens is more than the 128 this model was trained on" 10 && ok ||
    bad "no warning for -c 256 in the full screen: $(screen)"
T capture-pane -t ui -e -p | grep -q "$(printf '\033')\[[0-9;]*3[0-7]m" && ok || bad "the default theme shows no colour"
stop
start 80 24 "NO_COLOR=1 NATTER_WEIGHTS=mmap" ""
wait_for "Type a message" && ok || bad "start with NO_COLOR"
T capture-pane -t ui -e -p | grep -q "$(printf '\033')\[[0-9;]*3[0-7]m" && bad "NO_COLOR still shows colours" || ok
# The weights mapped from the file: the status line says so, and why.
wait_for "weights mapped from the file \(NATTER_WEIGHTS=mmap\)" 10 && ok || bad "no notice of mapped weights: $(screen)"
stop

# 18. A missing model, on a terminal: a clear message, no screen taken.
in_tty miss "" "\"$NATTER_BIN\" -m \"$tmp/none.gguf\""
[ "$(cat "$tmp/miss.status")" = 1 ] && ok || bad "missing model status $(cat "$tmp/miss.status")"
grep -q "cannot open" "$tmp/miss.err" && grep -q "Get a GGUF model" "$tmp/miss.err" && ok ||
    bad "missing model message: $(cat "$tmp/miss.err")"
stop

# 19. TERM=dumb is refused like an unknown terminal.
in_tty dumb "TERM=dumb" "\"$NATTER_BIN\" -m \"$M\""
[ "$(cat "$tmp/dumb.status")" = 2 ] && ok || bad "TERM=dumb status $(cat "$tmp/dumb.status")"
grep -q "cannot drive this terminal (TERM=dumb)" "$tmp/dumb.err" && ok || bad "TERM=dumb message: $(cat "$tmp/dumb.err")"
stop

# 20. Not a terminal: said before the database is opened (or the model hashed).
NATTER_DB="$tmp/never.db" "$NATTER_BIN" -m "$M" < /dev/null > "$tmp/out" 2>"$tmp/err"; [ $? -eq 2 ] && ok || bad "no terminal status"
grep -q "needs a terminal" "$tmp/err" && ok || bad "no terminal message: $(cat "$tmp/err")"
[ ! -e "$tmp/never.db" ] && ok || bad "the database was opened before the terminal was checked"
NATTER_DB="$tmp/never.db" "$NATTER_BIN" chat -m "$M" < /dev/null > "$tmp/out" 2>"$tmp/err"; [ $? -eq 2 ] && ok || bad "chat: no terminal status"
[ ! -e "$tmp/never.db" ] && ok || bad "chat: the database was opened before the terminal was checked"

# 21. No -m: the models folder is listed (here with two models in it).
mkdir -p "$tmp/xd/natter/models"
cp "$M" "$tmp/xd/natter/models/one.gguf"
cp "$M" "$tmp/xd/natter/models/two.gguf"
XDG_DATA_HOME="$tmp/xd" "$NATTER_BIN" 2>"$tmp/err"; [ $? -eq 2 ] && ok || bad "no model status"
grep -q "one.gguf" "$tmp/err" && grep -q "two.gguf" "$tmp/err" && ok || bad "models folder not listed: $(cat "$tmp/err")"

# 22. The full screen reads its options as strictly as chat --plain, and
# takes the model and theme from the config file when not given.
# (On a terminal, so that "needs a terminal" cannot be the reason.)
in_tty badseed "" "$NATTER_BIN -m $M --seed abc"
[ "$(cat "$tmp/badseed.status" 2>/dev/null)" = 2 ] && grep -q -- "--seed" "$tmp/badseed.err" && ok ||
    bad "bad --seed: status $(cat "$tmp/badseed.status" 2>/dev/null), $(cat "$tmp/badseed.err")"
T kill-session -t badseed 2>/dev/null
in_tty baddelay "" "$NATTER_BIN -m $M --token-delay x"
[ "$(cat "$tmp/baddelay.status" 2>/dev/null)" = 2 ] && ok || bad "bad --token-delay status"
T kill-session -t baddelay 2>/dev/null
mkdir -p "$tmp/cfg/natter"
printf 'model = %s\ntheme = nosuchtheme\n' "$M" > "$tmp/cfg/natter/config"
new_session ui 100 30 "env XDG_CONFIG_HOME=$tmp/cfg $NATTER_BIN --no-history; sleep 60"
wait_for "aidreams260K-f32.gguf" && ok || bad "the config file's model was not used: $(screen)"
wait_for "nosuchtheme" && ok || bad "the config file's theme was not tried: $(screen)"
stop
printf 'temp = hot\n' > "$tmp/cfg/natter/config"
in_tty badcfg "XDG_CONFIG_HOME=$tmp/cfg" "$NATTER_BIN -m $M"
[ "$(cat "$tmp/badcfg.status" 2>/dev/null)" = 2 ] && grep -q "natter/config:1: temp" "$tmp/badcfg.err" && ok ||
    bad "bad config: status $(cat "$tmp/badcfg.status" 2>/dev/null), $(cat "$tmp/badcfg.err")"
T kill-session -t badcfg 2>/dev/null

# 23. A reasoning model's reply.  DeepSeek-R1's template opens the
# reasoning in its generation prompt, so this model's whole reply is
# reasoning: it streams folded to one dim line with a live count; F4 shows
# it and folds it again; in the conversation focus t does the same for the
# chosen reply; the statistics count it apart; a narrow pane gets a short
# fold line.  Then the same reply (same seed) with a close tag taken from
# inside it (think_tags in the config file): the answer shows under the
# fold line.
shows_f() { screen | grep -qF -- "$1"; }
lacks_f() { ! screen | grep -qF -- "$1"; }
R1="$NATTER_FIXTURES/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"
start 100 30 "" "--token-delay 60 -n 40 -c 256 --chat-template $R1"
wait_for "Type a message" || bad "start with R1's template: $(screen)"
T send-keys -t ui "Tell me a dream" Enter
wait_for "thinking\.\.\. [1-9][0-9]* tokens \(F4 shows it\)" 10 && ok || bad "no live fold line: $(screen)"
wait_for "state +done" 20 && ok || bad "the reasoning reply did not finish: $(screen)"
gid=$(q "SELECT max(id) FROM generations")
check_db() { [ "$(q "SELECT n_reasoning || '|' || n_gen || '|' || content FROM generations WHERE id = $gid")" = "40|40|" ]; }
check_db && ok || bad "stored: $(q "SELECT n_reasoning, n_gen, content FROM generations WHERE id = $gid")"
# A piece of the reasoning as the pane shows it: its first line, 12 characters.
r10=$(q "SELECT ltrim(reasoning, char(10)) FROM generations WHERE id = $gid" | head -n 1 | cut -c1-12)
[ ${#r10} -ge 4 ] && ok || bad "no reasoning stored to look for: '$r10'"
wait_for "thought for 40 tokens \(F4 shows it\)" && ok || bad "fold line after the reply: $(screen)"
lacks_f "$r10" && ok || bad "the folded reasoning shows: $(screen)"
shows "reply +40 tokens" && shows "reasoning +40 tokens" && ok || bad "statistics: $(screen)"
T capture-pane -t ui -e -p | grep "thought for" | grep -q "$(printf '\033')\[\([0-9]*;\)*2\(;[0-9]*\)*m" && ok ||
    bad "the fold line is not dim: $(T capture-pane -t ui -e -p | grep 'thought for' | od -c | head -3)"
T send-keys -t ui F4
DEADLINE=5 until_ok shows_f "$r10" && shows "thought for 40 tokens +│" && ok || bad "F4 did not show the reasoning: $(screen)"
T send-keys -t ui F4
DEADLINE=5 until_ok lacks_f "$r10" && ok || bad "F4 did not fold it again: $(screen)"
T send-keys -t ui Tab t
DEADLINE=5 until_ok shows_f "$r10" && ok || bad "t in the conversation did not show the reasoning: $(screen)"
T send-keys -t ui t
DEADLINE=5 until_ok lacks_f "$r10" && ok || bad "t did not fold it again: $(screen)"
T send-keys -t ui Up t
wait_for "this message has no reasoning" 5 && ok || bad "t on the user's message: $(screen)"
T send-keys -t ui Escape
T resize-window -t ui -x 30 -y 20
wait_for "40 tok *$" 5 && ok || bad "the short fold line at 30 columns: $(screen)"
# The close tag: a word from inside the reply (read while natter is idle:
# as it exits it may hold the database for a moment).
w=$(q "SELECT reasoning FROM generations WHERE id = $gid" | tr -cs 'A-Za-z' '\n' | awk 'length >= 3' | sed -n 2p)
[ -n "$w" ] && ok || bad "no word to close on"
stop
mkdir -p "$XDG_CONFIG_HOME/natter"
printf 'think_tags = <think> %s\n' "$w" > "$XDG_CONFIG_HOME/natter/config"
start 100 30 "" "--token-delay 1 -n 40 -c 256 --chat-template $R1"
wait_for "Type a message" || bad "start with think_tags: $(screen)"
T send-keys -t ui "Tell me a dream" Enter
wait_for "state +done" 20 && ok || bad "the split reply did not finish: $(screen)"
g2=$(q "SELECT max(id) FROM generations")
[ "$(q "SELECT b.reasoning = substr(a.reasoning, 1, instr(a.reasoning, '$w') - 1) AND b.n_reasoning < 40
    AND b.content <> '' FROM generations a, generations b WHERE a.id = $gid AND b.id = $g2")" = 1 ] && ok ||
    bad "split at '$w': $(q "SELECT reasoning, '|', content FROM generations WHERE id = $g2")"
nr=$(q "SELECT n_reasoning FROM generations WHERE id = $g2")
a10=$(q "SELECT content FROM generations WHERE id = $g2" | head -n 1 | cut -c1-12)
wait_for "thought for $nr tokens \(F4 shows it\)" 5 && shows_f "$a10" && ok || bad "fold line and answer ('$a10'): $(screen)"
shows "reasoning +$nr tokens" && ok || bad "statistics of the split reply: $(screen)"
stop
rm -f "$XDG_CONFIG_HOME/natter/config"

# 24. Ratings land on the reply on screen.  While a reply streams, + is
# refused (the last stored reply is not the one being written), and so is
# /rate; Up chooses an older reply, and + rates that one; an alternative
# flipped to is rated, by a key or by /rate, not the one chosen.
NATTER_DB="$tmp/rate.db"
start 100 30 "NATTER_DB=$NATTER_DB" "--token-delay 40 -n 60 --theme mono"
wait_for "Type a message" || bad "start for the ratings: $(screen)"
T send-keys -t ui "first question" Enter
wait_sql "SELECT count(*) FROM generations" 1 20 && wait_for "state +done" 10 || bad "first reply: $(screen)"
T send-keys -t ui "second question" Enter
wait_for "state +generating" 10 || bad "second reply not generating: $(screen)"
T send-keys -t ui Tab "+"
wait_for "rate: stop the reply first" 10 && ok || bad "+ while streaming: $(screen)"
T send-keys -t ui "/rate up" Enter
wait_for "/rate: stop the reply first" 10 && ok || bad "/rate while streaming: $(screen)"
wait_sql "SELECT count(*) FROM generations" 2 20 && wait_for "state +done" 10 || bad "second reply: $(screen)"
sql_is "SELECT count(*) FROM ratings" 0 && ok || bad "rated while a reply streamed: $(q "SELECT * FROM ratings")"
T send-keys -t ui C-u F5
wait_for "state +generating" 10 || bad "F5 did not regenerate: $(screen)"
T send-keys -t ui Tab "-"
wait_for "(^|[^/])rate: stop the reply first" 10 && ok || bad "- during F5: $(screen)"
wait_sql "SELECT count(*) FROM generations" 3 20 && wait_for "state +done" 10 || bad "regenerated reply: $(screen)"
sql_is "SELECT count(*) FROM ratings" 0 && ok || bad "rated the replaced alternative: $(q "SELECT * FROM ratings")"
T send-keys -t ui Up Up "+"
wait_for "rated generation 1 up" 10 && ok || bad "+ on the first reply: $(screen)"
sql_is "SELECT generation_id || ' ' || value FROM ratings" "1 1" && ok || bad "ratings: $(q "SELECT * FROM ratings")"
T send-keys -t ui Down Down Left "4"
wait_for "rated generation 2 4" 10 && ok || bad "4 on the alternative shown: $(screen)"
sql_is "SELECT count(*) FROM ratings WHERE generation_id = 3" 0 && ok || bad "the chosen alternative was rated, not the one shown"
# Typed, /rate rates the same reply as the keys: the alternative shown.
T send-keys -t ui "/rate down" Enter
wait_for "rated generation 2 down" 10 && ok || bad "/rate on the alternative shown: $(screen)"
sql_is "SELECT count(*) FROM ratings WHERE generation_id = 3" 0 && ok || bad "/rate rated the chosen alternative"
T send-keys -t ui Tab

# 25. An edit begun in one conversation ends with it: after F2 the text
# is an ordinary message of the new conversation; after F3 + Enter, one
# at the end of the resumed conversation (not a branch of its message 1).
T send-keys -t ui Up Enter
wait_for "^edit> second question" 10 && ok || bad "Enter on the second question did not edit it: $(screen)"
T send-keys -t ui F2
wait_for "new conversation; what you typed stays" 10 && ok || bad "F2 in edit mode: $(screen)"
shows "^> second question" && ok || bad "the edit's text is not a message in the input line: $(screen)"
T send-keys -t ui Enter
wait_sql "SELECT count(*) FROM messages WHERE conversation_id = 2 AND content = 'second question'" 1 &&
    ok || bad "the text was not sent in the new conversation: $(q "SELECT conversation_id, role, content FROM messages")"
wait_sql "SELECT count(*) FROM generations" 4 20 && wait_for "state +done" 10 || bad "reply in conversation 2: $(screen)"
T send-keys -t ui Tab Up Enter
wait_for "^edit> second question" 10 || bad "edit in conversation 2: $(screen)"
T send-keys -t ui C-u "moved on" F3
wait_for "Past conversations" 10 || bad "F3 in edit mode: $(screen)"
T send-keys -t ui Down Enter
wait_for "resumed conversation 1; what you typed stays" 10 && ok || bad "F3 + Enter in edit mode: $(screen)"
T send-keys -t ui Enter
wait_sql "SELECT count(*) FROM messages m JOIN generations g ON g.message_id = m.parent_id AND g.id = 2
    WHERE m.conversation_id = 1 AND m.content = 'moved on'" 1 && ok ||
    bad "the text is not a message at the end of conversation 1: $(q "SELECT id, conversation_id, parent_id, role, content FROM messages")"
wait_sql "SELECT count(*) FROM generations" 5 20 && wait_for "state +done" 10 || bad "reply in conversation 1: $(screen)"

# 26. A comment the store cannot take (its reply deleted meanwhile by
# natter history delete) stays in the input line.
T send-keys -t ui Tab "+"
wait_for "rated generation 5 up" 10 && ok || bad "+ on the last reply: $(screen)"
T send-keys -t ui c "a fine comment"
wait_for "^comment> a fine comment" 10 || bad "comment mode: $(screen)"
NATTER_DB="$NATTER_DB" "$NATTER_BIN" history delete 1 >/dev/null 2>&1 || bad "history delete 1"
T send-keys -t ui Enter
wait_for "not rated: conversation 1 was deleted from the history by another program" 10 && ok ||
    bad "no notice of the failed comment: $(screen)"
shows "^comment> a fine comment" && ok || bad "the comment is lost: $(screen)"
stop

# 27. A draft in the input line survives what takes the line: an edit
# (Esc), a comment (Enter), a /set from the parameters pane (Enter) and the
# system prompt editor (Esc) each give it back.
fresh "$tmp/draft.db" 100 "--token-delay 1 -n 10 --theme mono" "hello there"
T send-keys -t ui "my draft"
wait_for "^> my draft" 10 || bad "draft not typed: $(screen)"
T send-keys -t ui Tab Up Enter
wait_for "^edit> hello there" 10 && ok || bad "edit: $(screen)"
T send-keys -t ui Escape
wait_for "^> my draft" 10 && ok || bad "Esc after an edit lost the draft: $(screen)"
T send-keys -t ui Tab Down "+"
wait_for "rated generation 1 up" 10 || bad "+ for the comment: $(screen)"
T send-keys -t ui c
wait_for "^comment> *$" 10 && ok || bad "c: $(screen)"
T send-keys -t ui "nice" Enter
wait_sql "SELECT comment FROM ratings WHERE generation_id = 1" "nice" || bad "the comment was not saved"
wait_for "^> my draft" 10 && ok || bad "a comment lost the draft: $(screen)"
T send-keys -t ui Tab Tab Enter
wait_for "^> /set temp *$" 10 && ok || bad "Enter on temp: $(screen)"
# Other words typed over that line, and the pane's Enter again: the draft
# stays the one to come back, and these go to the input history.
T send-keys -t ui C-u "second words"
wait_for "^> second words" 10 || bad "typing over the /set: $(screen)"
T send-keys -t ui Tab Tab Enter
wait_for "^> /set temp *$" 10 && wait_for "what you typed is in the input history" 10 && ok ||
    bad "a second Enter on temp: $(screen)"
T send-keys -t ui "0.5" Enter
wait_for "temp +0\.50" 10 && wait_for "^> my draft" 10 && ok || bad "a /set lost the draft: $(screen)"
T send-keys -t ui Up Up
wait_for "^> second words" 10 && ok || bad "the words typed over the /set are not in the input history: $(screen)"
T send-keys -t ui Down Down
wait_for "^> my draft" 10 || bad "Down did not come back to the draft: $(screen)"
# The same words typed over the /set, then an edit takes the line: its
# notice says where they went.
T send-keys -t ui Tab Tab Enter
wait_for "^> /set temp *$" 10 || bad "Enter on temp again: $(screen)"
T send-keys -t ui C-u "third words" Tab Up Enter
wait_for "^edit> hello there" 10 && wait_for "Esc cancels\); what you typed is in the input history \(Up\)" 10 && ok ||
    bad "an edit over words typed over a /set: $(screen)"
T send-keys -t ui Escape
wait_for "^> my draft" 10 || bad "Esc after that edit: $(screen)"
T send-keys -t ui Tab Tab Up Up Up Up Up Up Up Up Down Down Down Down Down Down Down Enter
wait_for "^system>" 10 && ok || bad "system prompt editor: $(screen)"
T send-keys -t ui Escape
wait_for "^> my draft" 10 && ok || bad "Esc after the system prompt lost the draft: $(screen)"
stop

# set_and_quit COLS DATA-HOME: with no database (--no-history), one line
# typed into the input history, then F10.
set_and_quit() {
	start "$1" 30 "XDG_DATA_HOME=$2" "--no-history"
	wait_for "Type a message" || bad "start with the data folder $2: $(screen)"
	T send-keys -t ui "/set temp 0.5" Enter
	wait_for "temp = 0.5" 10 || bad "/set: $(screen)"
	if [ -n "${3:-}" ]; then
		# A command refused stays in the line to be corrected; words
		# typed and never sent go to the input history on the way out.
		T send-keys -t ui "/set temp 0,7" Enter
		wait_for "'0,7' is not a number" 10 && shows "^> /set temp 0,7" && ok ||
		    bad "the refused command is not in the line: $(screen)"
		T send-keys -t ui C-u "words never sent"
		wait_for "^> words never sent" 10 || bad "typing after the refused command: $(screen)"
	fi
	T send-keys -t ui F10
	wait_file "$tmp/stty.after" || bad "F10 did not quit"
}

# 28. The input history is saved where the data folder did not exist yet
# (--no-history: no database made it), in a folder of the user's own.
set_and_quit 100 "$tmp/fresh" more
grep -qx "/set temp 0.5" "$tmp/fresh/natter/input_history" 2>/dev/null && ok ||
    bad "input history not saved: $(ls -lR "$tmp/fresh" 2>&1)"
grep -qx "words never sent" "$tmp/fresh/natter/input_history" 2>/dev/null && ok ||
    bad "the line at F10 is not in the input history: $(cat "$tmp/fresh/natter/input_history" 2>&1)"
[ "$(stat -c %a "$tmp/fresh/natter" 2>/dev/null)" = 700 ] && ok || bad "data folder mode $(stat -c %a "$tmp/fresh/natter" 2>&1)"
stop

# 28b. A line recalled from the input history and changed, then pushed
# aside by the parameters pane's Enter: the entry it was recalled from
# stays as it was (readline replayed the line's undo list over the
# command's text and wrote the result over that entry).  And the line
# typed before Up goes to the input history: Down no longer brings it
# back over the command.
start 100 30 "XDG_DATA_HOME=$tmp/recall" "--no-history"
wait_for "Type a message" || bad "start: $(screen)"
T send-keys -t ui "/set top_k 7" Enter
wait_for "top_k = 7" 10 || bad "/set top_k: $(screen)"
T send-keys -t ui Up " 8"
wait_for "^> /set top_k 7 8" 10 || bad "the recalled line, changed: $(screen)"
T send-keys -t ui Tab Tab Enter
wait_for "^> /set temp *$" 10 || bad "Enter on temp: $(screen)"
T send-keys -t ui "0.5" Enter
wait_for "temp = 0.5" 10 && wait_for "^> /set top_k 7 8" 10 || bad "the /set and the draft back: $(screen)"
T send-keys -t ui C-u "pre draft" Up
wait_for "^> /set temp 0.5" 10 || bad "Up over a draft: $(screen)"
T send-keys -t ui Tab Tab Enter
wait_for "^> /set temp *$" 10 || bad "Enter on temp over a recalled line: $(screen)"
T send-keys -t ui Down
T send-keys -t ui "0.6"
wait_for "^> /set temp 0.6" 10 && ok || bad "Down brought the line from before Up back over the command: $(screen)"
T send-keys -t ui Enter
wait_for "temp = 0.6" 10 && wait_for "^> /set temp 0.5" 10 || bad "the second /set and its draft back: $(screen)"
T send-keys -t ui C-u F10
wait_file "$tmp/stty.after" || bad "F10 did not quit"
[ "$(sed 1d "$tmp/recall/natter/input_history" 2>/dev/null)" = "/set top_k 7
/set temp 0.5
pre draft
/set temp 0.6" ] && ok || bad "the input history: $(cat "$tmp/recall/natter/input_history" 2>&1)"
stop

# 28c. A line recalled with Up and sent: the draft typed before Up comes
# back into the input line (readline kept it aside and dropped it at the
# next line).  A message of several lines is one entry of the input
# history across a restart (it came back a line at a time), with its empty
# line and a line that reads like a time stamp (readline's file format
# dropped the one and took the other for a time); a file from before, in
# readline's format without "#TIME" lines, still reads a line an entry.
mkdir -p "$tmp/draft/natter"
printf 'old one\nold two\n' > "$tmp/draft/natter/input_history"
start 100 30 "XDG_DATA_HOME=$tmp/draft" "--no-history -n 4"
wait_for "Type a message" || bad "start: $(screen)"
T send-keys -t ui "first words" Enter
wait_for "state +done" 20 || bad "the first reply: $(screen)"
T send-keys -t ui "my long draft" Up
wait_for "^> first words" 10 || bad "Up over a draft: $(screen)"
T send-keys -t ui Enter
wait_for "^> my long draft" 10 && ok || bad "the draft did not come back after the recalled line was sent: $(screen)"
wait_for "state +done" 20 || bad "the second reply: $(screen)"
T send-keys -t ui C-u "line one" M-Enter M-Enter "#1700000000" M-Enter "line two" F10
wait_file "$tmp/stty.after" || bad "F10 did not quit"
stop
start 100 30 "XDG_DATA_HOME=$tmp/draft" "--no-history"
wait_for "Type a message" || bad "restart: $(screen)"
T send-keys -t ui Up
wait_for "^> line one" 10 && [ "$(screen | grep -A3 '^> line one' | sed 's/ *$//')" = "> line one

#1700000000
line two" ] && ok || bad "the entry with an empty line and a line like a time, after a restart: $(screen)"
T send-keys -t ui Up
wait_for "^> first words" 10 && ok || bad "the entry before it: $(screen)"
T send-keys -t ui Up Up
wait_for "^> old two" 10 && ok || bad "an entry of the file from before: $(screen)"
T send-keys -t ui C-u F10
wait_file "$tmp/stty.after" || bad "F10 did not quit"
stop

# 29. An input history that cannot be saved (a file where its folder
# would be) is said on the way out, after the terminal is given back.
printf 'a file, not a folder' > "$tmp/notdir"
set_and_quit 160 "$tmp/notdir"
wait_for "the input history was not saved to $tmp/notdir/natter/input_history: Not a directory" 10 && ok ||
    bad "unsaved input history not said: $(screen)"
[ "$(cat "$tmp/status" 2>/dev/null)" = 0 ] && ok || bad "exit status with an unsaved input history: $(cat "$tmp/status" 2>&1)"
[ "$(cat "$tmp/notdir")" = "a file, not a folder" ] && ok || bad "the file in the way was changed"
stop

# 30. The conversation deleted by another program (natter history
# delete) before an edit: the edited message and its reply start a new
# conversation, said once the reply is saved, with no "not saved" while
# it is written (each token 200 ms: an edit's notice would still show).
# Then, deleted again before a reply is chosen with Left + Enter: the
# choice cannot be saved, and the notice says why.
fresh "$tmp/gone.db" 160 "--token-delay 200 -n 6 --theme mono" "first question"
NATTER_DB="$NATTER_DB" "$NATTER_BIN" history delete 1 >/dev/null 2>&1 || bad "history delete 1"
T send-keys -t ui Tab Up Enter
wait_for "^edit> first question" 10 || bad "edit after the delete: $(screen)"
T send-keys -t ui C-e C-u "edited after the delete" Enter
wait_for "state +generating" 10 || bad "no reply to the edit: $(screen)"
lacks "not saved" && ok || bad "an edit saved with its reply is called not saved: $(screen)"
wait_sql "SELECT count(*) FROM generations" 1 20 && wait_for "state +done" 10 || bad "reply to the edit: $(screen)"
wait_for "conversation 1 was deleted from the history by another program; this chat is saved from your last" 10 &&
    ok || bad "the move is not said after the edit: $(screen)"
sql_is "SELECT group_concat(role || ':' || content, '|') FROM (SELECT role, content FROM messages
    WHERE conversation_id = 2 ORDER BY seq)" "user:edited after the delete|assistant:$(q "SELECT content FROM generations")" &&
    ok || bad "conversation 2: $(q "SELECT id, conversation_id, parent_id, role, content FROM messages")"
T send-keys -t ui Escape F5
wait_sql "SELECT count(*) FROM generations" 2 20 && wait_for "state +done" 10 || bad "regenerated: $(screen)"
NATTER_DB="$NATTER_DB" "$NATTER_BIN" history delete 2 >/dev/null 2>&1 || bad "history delete 2"
T send-keys -t ui Tab Left
wait_for "^Assistant \\(1/2\\), not chosen:" 10 || bad "Left after the second delete: $(screen)"
T send-keys -t ui Enter
wait_for "chosen, but not saved: conversation 2 was deleted from the history by another program" 10 && ok ||
    bad "the unsaved choice is not explained: $(screen)"
stop

# 31. A history another process holds locked when a message is sent:
# the screen says it waits; the save waits out the busy timeout and says
# "not saved"; the lock let
# go while the reply is written, the reply's save stores the message too,
# and the notice says so.
fresh "$tmp/busy.db" 200 "--token-delay 200 -n 6 --theme mono" "before the lock"
lock_history
T send-keys -t ui "while it is locked" Enter
wait_for "the history is locked by another program: waiting for it" 10 && ok || bad "the wait is not said: $(screen)"
# The screen drawn while the save waits: the message sent is in the
# conversation, no longer in the input line.
shows "^> *$" && lacks "^> while it is locked" && ok || bad "the sent message is still in the input line: $(screen)"
wait_for "not saved: .*stayed busy" 20 && ok || bad "the busy history is not said: $(screen)"
unlock_history
wait_sql "SELECT count(*) FROM generations" 2 20 && wait_for "state +done" 10 || bad "reply after the lock: $(screen)"
wait_for "saved after all: your message, with its reply" 10 && ok || bad "the late save is not said: $(screen)"
sql_is "SELECT count(*) FROM messages m JOIN messages r ON r.parent_id = m.id
    WHERE m.content = 'while it is locked' AND r.role = 'assistant'" 1 && ok ||
    bad "the message and its reply: $(q "SELECT id, parent_id, role, content FROM messages")"
sql_is "SELECT count(*) FROM messages WHERE content = 'while it is locked'" 1 && ok || bad "the message saved twice"
# A lock let go while the save waits: the save succeeds, and the notice
# of the wait goes (it would otherwise show for 8 s).  In a new
# conversation: no notice of dropped turns comes after it.
T send-keys -t ui F2
wait_for "new conversation" 10 || bad "F2 before the short lock: $(screen)"
lock_history
T send-keys -t ui "a short lock" Enter
wait_for "the history is locked by another program: waiting for it" 10 || bad "the short wait is not said: $(screen)"
unlock_history
wait_sql "SELECT count(*) FROM messages WHERE content = 'a short lock'" 1 10 || bad "the message after a short lock"
DEADLINE=4 until_ok lacks "the history is locked by another program" && ok ||
    bad "the notice of the wait stays after it: $(screen)"
wait_sql "SELECT count(*) FROM generations" 3 20 && wait_for "state +done" 10 || bad "reply after the short lock: $(screen)"
stop

# 32. A rating typed as /rate is one a comment (c) can follow, as a
# keyed one is: the comment goes with it, on the same reply.
fresh "$tmp/typed.db" 160 "-n 6 --theme mono" "rate me"
T send-keys -t ui "/rate 4" Enter
wait_for "rated generation 1 4" 10 || bad "/rate 4: $(screen)"
T send-keys -t ui Tab c
wait_for "^comment> *$" 10 && ok || bad "c after /rate: $(screen)"
T send-keys -t ui "after a typed rating" Enter
wait_sql "SELECT kind || ' ' || value || ' ' || comment FROM ratings WHERE generation_id = 1" "stars 4 after a typed rating" &&
    ok || bad "the comment after /rate: $(q "SELECT * FROM ratings")"
# A rating (+), then the conversation resumed (F3, Enter): no rating of
# it was given since, so c asks for one (the last one given was of the
# session before).
T send-keys -t ui Tab +
wait_for "rated generation 1 up" 10 || bad "+ before the resume: $(screen)"
T send-keys -t ui F3
wait_for "Past conversations" 10 || bad "F3 for the rating: $(screen)"
T send-keys -t ui Enter
wait_for "resumed conversation 1" 10 || bad "resume for the rating: $(screen)"
T send-keys -t ui Escape Tab c
wait_for "rate the reply first" 10 && ok || bad "c after a resume: $(screen)"
stop

# 33. Two turns, the conversation deleted by another program, a third
# turn (saved in a new conversation, 2), then the second message edited:
# what came before it is not in conversation 2, so the edit starts a
# branch at its root (not after the third turn's reply), and nothing
# says it was not saved.
NATTER_DB="$tmp/gone2.db"
start 160 30 "NATTER_DB=$NATTER_DB" "--token-delay 200 -n 4 --theme mono"
wait_for "Type a message" || bad "start for the second edit: $(screen)"
for m in "question one" "question two"; do
	T send-keys -t ui "$m" Enter
	wait_sql "SELECT count(*) FROM messages WHERE content = '$m'" 1 20 && wait_for "state +done" 20 || bad "$m: $(screen)"
done
NATTER_DB="$NATTER_DB" "$NATTER_BIN" history delete 1 >/dev/null 2>&1 || bad "history delete 1 (33)"
T send-keys -t ui "question three" Enter
wait_sql "SELECT conversation_id FROM messages WHERE content = 'question three'" 2 20 && wait_for "state +done" 20 ||
    bad "question three: $(q "SELECT id, conversation_id, parent_id, role, content FROM messages")"
T send-keys -t ui Tab Up Up Up Enter
wait_for "^edit> question two" 10 || bad "edit of question two: $(screen)"
T send-keys -t ui C-e C-u "question two, edited" Enter
wait_for "state +generating" 10 || bad "no reply to the second edit: $(screen)"
lacks "not saved" && ok || bad "the second edit is called not saved: $(screen)"
wait_sql "SELECT conversation_id || ' ' || COALESCE(parent_id, 'root') FROM messages WHERE content = 'question two, edited'" \
    "2 root" 20 && ok || bad "the second edit: $(q "SELECT id, conversation_id, parent_id, role, content FROM messages")"
stop

# 34. Text from the history that holds controls is drawn on its own row,
# as the conversation shows it: a title with a tab, an escape and a
# carriage return in the F3 list, a system prompt of two lines in the
# parameters pane.  A short parameters pane scrolls to the row being
# changed; side panes too short to draw leave their width to the
# conversation.
NATTER_DB="$tmp/ctl.db"
printf 'tab\there\033[31m red\rCR\n' | NATTER_DB="$NATTER_DB" "$NATTER_BIN" chat --plain -m "$M" -n 2 \
    --system "$(printf 'SYS1\nSYS2-below')" > /dev/null 2>&1 || bad "chat --plain for the title (34)"
start 100 30 "NATTER_DB=$NATTER_DB" "--theme mono"
wait_for "Type a message" || bad "start (34): $(screen)"
T send-keys -t ui F3
wait_for "Past conversations" 10 || bad "F3 (34): $(screen)"
shows "tab    here␛\[31m red␍CR" && ok || bad "a title with controls in the F3 list: $(screen)"
lacks "^CR" && ok || bad "a title's carriage return was acted on: $(screen)"
T send-keys -t ui Enter
wait_for "resumed conversation 1" 10 || bad "resume (34): $(screen)"
wait_for "system +SYS1 SYS2-below" 10 && ok || bad "a system prompt of two lines: $(screen)"
lacks "^SYS2" && ok || bad "a system prompt's line break was acted on: $(screen)"
T resize-window -t ui -x 100 -y 12
wait_for "Parameters" 10 || bad "100x12 (34): $(screen)"
# temp, top_p, top_k, min_p, repeat_penalty, max_tokens, seed: the pane shows 4.
params_focus() { footer | grep -q "Left/Right change"; }
for i in 1 2 3; do params_focus || T send-keys -t ui Tab; DEADLINE=3 until_ok params_focus && break; done
params_focus && ok || bad "no focus on the parameters (34): $(screen)"
T send-keys -t ui Down Down Down Down Down Down
wait_for "│ seed +[0-9a-z]" 10 && ok || bad "the selected row is off a short parameters pane: $(screen)"
lacks "│ temp " && ok || bad "a short parameters pane did not scroll: $(screen)"
T resize-window -t ui -x 100 -y 5
# 3 rows above the input and footer: no side panes, the conversation's title row the whole width.
wide_conv() { [ "$(screen | sed -n 1p | grep -o "─" | wc -l)" -ge 80 ]; }
DEADLINE=10 until_ok wide_conv && ok || bad "side panes too short to draw keep their width: $(screen)"
stop

# 34b. Esc at once followed by a resize: both count (the help box closes).
start 100 30 "" "--theme mono"
wait_for "Type a message" || bad "start (34b): $(screen)"
T send-keys -t ui F1
wait_for "Parameters: Up/Down" 10 || bad "F1 (34b): $(screen)"
T send-keys -t ui Escape \; resize-window -t ui -x 90 -y 28
wait_gone "Parameters: Up/Down" 10 && ok || bad "Esc before a resize was lost: $(screen)"
stop

# 34c. Scrolled back in a long conversation, a new width keeps the same
# text at the top (the row number alone pointed elsewhere once rewrapped).
NATTER_DB="$tmp/long.db"
for i in $(seq 1 25); do
	echo "Turn $i: once upon a time there was a little girl who liked to play in the park with her friends"
done | NATTER_DB="$NATTER_DB" "$NATTER_BIN" chat --plain -m "$M" -c 4096 -n 60 --seed 5 > /dev/null 2>&1 ||
    bad "a long conversation (34c)"
start 100 30 "NATTER_DB=$NATTER_DB" "--theme mono"
wait_for "Type a message" || bad "start (34c): $(screen)"
T send-keys -t ui F3
wait_for "Past conversations" 10 || bad "F3 (34c): $(screen)"
T send-keys -t ui Enter
wait_for "resumed conversation 1" 10 || bad "resume (34c): $(screen)"
T send-keys -t ui PPage PPage PPage PPage
wait_for "more below" 10 || bad "PgUp (34c): $(screen)"
# The first turn in the pane, and its row.
at=$(screen | grep -n -Eo "Turn [0-9]+:" | head -n 1)
turn=${at#*:} row=${at%%:*}
[ -n "$turn" ] && ok || bad "no turn in the pane after PgUp (34c): $(screen)"
T resize-window -t ui -x 40 -y 30
wait_gone "Parameters" 10 || bad "40x30 (34c): $(screen)"
# Rewrapped to 38 columns from 66, what lies above that turn takes under
# twice its rows: the turn is still on screen, that far down at most.
within=$((2 * row + 2))
DEADLINE=5 until_ok sh -c "tmux -L $sock capture-pane -t ui -p | sed -n 2,${within}p | grep -q '$turn'" && ok ||
    bad "$turn (row $row) is not within $within rows after a resize: $(screen)"
stop

# 35. A theme that cannot be read as one is said, and the default used:
# a FIFO is not waited on (the terminal is in raw mode: Ctrl-C could not
# end the wait), a line past 255 characters is not cut short, a NUL byte
# is not the file's end.
mkfifo "$tmp/fifo.theme"
printf 'normal = %300s\n' "red default" > "$tmp/long.theme"
printf 'normal = red default\n\000garbage = purple\n' > "$tmp/nul.theme"
for t in "fifo|not a regular file" "long|line 1 is longer than 255 characters" "nul|holds a NUL byte"; do
	start 160 30 "" "--theme $tmp/${t%%|*}.theme"
	wait_for "${t#*|}" 10 && ok || bad "theme ${t%%|*}: $(screen)"
	shows "Type a message" && ok || bad "theme ${t%%|*}: no start screen: $(screen)"
	stop
done

# 36. A/B: F6 and Enter write B beside A; F5 then closes the view and the
# reply streams in the conversation (the view showed it as "B", under
# "writing B", and stayed up after it).  Once it is written no pick
# is left: /pick says so, and none is stored.
fresh "$tmp/ab.db" 120 "--token-delay 20 -n 12" "hello"
T send-keys -t ui F6
wait_for "A/B: generate reply B with" 10 || bad "F6 (36): $(screen)"
T send-keys -t ui Enter
wait_for "A/B: which reply is better" 20 || bad "B not written (36): $(screen)"
T send-keys -t ui F5
wait_for "state +(generating|done)" 10 || bad "F5 with the A/B view (36): $(screen)"
lacks "A/B: (which reply|writing B)" && ok || bad "the A/B view stayed up on F5 (36): $(screen)"
wait_for "state +done" 20 || bad "the reply after F5 (36): $(screen)"
lacks "A/B: (which reply|writing B)" && ok || bad "the A/B view came back after F5 (36): $(screen)"
shows "^Assistant \(3/3\):" && ok || bad "the conversation does not show the third reply (36): $(screen)"
wait_sql "SELECT count(*) FROM generations" 3 10 || bad "three replies (36): $(q "SELECT count(*) FROM generations")"
T send-keys -t ui "/pick a" Enter
wait_for "there is no A/B comparison to pick from" 10 && ok || bad "/pick after F5 (36): $(screen)"
check_prefs=$(q "SELECT count(*) FROM preferences")
[ "$check_prefs" = 0 ] && ok || bad "a preference stored after F5 (36): $check_prefs"
# A new message with the view up closes it too, saying the comparison ends.
T send-keys -t ui F6
wait_for "A/B: generate reply B with" 10 || bad "F6 again (36): $(screen)"
T send-keys -t ui Enter
wait_for "A/B: which reply is better" 20 || bad "B not written again (36): $(screen)"
T send-keys -t ui C-u "next one" Enter
wait_for "A/B closed: a new reply ends the comparison, with no pick saved" 10 && ok ||
    bad "a message with the A/B view (36): $(screen)"
wait_for "state +done" 20 || bad "the reply to the next message (36): $(screen)"
lacks "A/B: (which reply|writing B)" && ok || bad "the A/B view stayed up after a message (36): $(screen)"
T send-keys -t ui "/pick b" Enter
wait_for "/pick: there is no A/B comparison|there is no A/B comparison to pick from" 10 && ok || bad "/pick b after a message (36): $(screen)"
[ "$(q "SELECT count(*) FROM preferences")" = 0 ] && ok || bad "a preference stored after a message (36)"
stop

# 36b. B stopped with Esc while it is written: no pick is offered (a
# preference over a reply never finished was stored); B stays as another
# version of the reply.
fresh "$tmp/abstop.db" 120 "--token-delay 300 -n 12" "hello"
T send-keys -t ui F6
wait_for "A/B: generate reply B with" 10 || bad "F6 (36b): $(screen)"
T send-keys -t ui Enter
wait_for "A/B: writing B" 10 || bad "B not started (36b): $(screen)"
T send-keys -t ui Escape
wait_for "A/B ended: reply B was not finished" 20 && ok || bad "a stopped B was offered for a pick (36b): $(screen)"
lacks "A/B: which reply" && ok || bad "the A/B view stayed up (36b): $(screen)"
T send-keys -t ui "/pick b" Enter
wait_for "there is no A/B comparison to pick from" 10 && ok || bad "/pick after a stopped B (36b): $(screen)"
[ "$(q "SELECT count(*) || '|' || (SELECT end_reason FROM generations ORDER BY id DESC LIMIT 1) FROM preferences")" = "0|stopped" ] &&
    ok || bad "a preference, or B not kept as stopped (36b): $(q "SELECT count(*) FROM preferences")"
stop

# 36c. A message typed in the A/B view: its first letter is the message's,
# not a pick (a message starting "t" recorded a tie).
fresh "$tmp/abtype.db" 120 "--token-delay 20 -n 6" "hello"
T send-keys -t ui F6
wait_for "A/B: generate reply B with" 10 || bad "F6 (36c): $(screen)"
T send-keys -t ui Enter
wait_for "A/B: which reply is better\? Tab: a/b/t" 20 || bad "B not written (36c): $(screen)"
T send-keys -t ui "tell me more"
wait_for "^> tell me more" 10 && ok || bad "the first letter was taken (36c): $(screen)"
[ "$(q "SELECT count(*) FROM preferences")" = 0 ] && ok || bad "typing picked (36c): $(q "SELECT pick FROM preferences")"
T send-keys -t ui C-u Tab a
wait_for "picked A" 10 && ok || bad "a away from the input line (36c): $(screen)"
wait_sql "SELECT pick FROM preferences" a 10 && ok || bad "the pick of A (36c): $(q "SELECT pick FROM preferences")"
stop

# 36d. Esc in edit mode: the rewrite typed is not thrown away; it is in the
# input history (Up), and the notice says so.
fresh "$tmp/esc.db" 100 "--token-delay 20 -n 4" "first question"
T send-keys -t ui Tab Up Enter
wait_for "^edit> first question" 10 || bad "edit (36d): $(screen)"
T send-keys -t ui C-e C-u "my careful rewrite"
wait_for "^edit> my careful rewrite" 10 || bad "the rewrite (36d): $(screen)"
T send-keys -t ui Escape
wait_for "cancelled \(what you typed is in the input history: Up\)" 10 && ok || bad "Esc in edit mode (36d): $(screen)"
T send-keys -t ui Up
wait_for "^> my careful rewrite" 10 && ok || bad "the rewrite is not in the input history (36d): $(screen)"
stop

# 36e. F5 on an unanswered message of a resumed conversation that no
# longer fits (a smaller -c): refused and withdrawn, it comes back into
# the input line (it was gone from the screen, the session and the history).
long=$(for i in $(seq 1 10); do printf "remember the lighthouse keeper "; done)
printf '%s\n' "$long" | NATTER_DB="$tmp/refit.db" "$NATTER_BIN" chat --plain -m "$M" -c 1024 -n 1 >/dev/null 2>&1
# Its reply lost (natter stopped before saving it): the conversation ends with the message.
sqlite3 "$tmp/refit.db" "UPDATE conversations SET leaf_id = (SELECT id FROM messages WHERE role = 'user');
    DELETE FROM messages WHERE role = 'assistant';" || bad "the reply not removed (36e)"
start 100 30 "NATTER_DB=$tmp/refit.db" "-c 40"
wait_for "Type a message" || bad "start (36e): $(screen)"
T send-keys -t ui F3
wait_for "Past conversations" 10 || bad "F3 (36e): $(screen)"
T send-keys -t ui Enter
wait_for "remember the lighthouse keeper" 10 || bad "the conversation resumed (36e): $(screen)"
T send-keys -t ui F5
wait_for "^> remember the lighthouse keeper" 20 && ok || bad "the refused message is not back in the line (36e): $(screen)"
stop

# 37. A first word too long for the input row starts beside the prompt:
# the prompt's blank is no place to break (the prompt stood alone on its
# row, the word below it).
start 40 30 "" ""
wait_for "Type a message" 20 || bad "start (37): $(screen)"
T send-keys -t ui "Wxyz$(printf '%056d' 0)"
wait_for "Wxyz" 10 || bad "the typed word (37): $(screen)"
shows "^> Wxyz0+ *$" && ok || bad "the first word is not beside the prompt (37): $(screen)"
lacks "^> *$" && ok || bad "the prompt alone on its row (37): $(screen)"
stop

# 38. The notice line shows one notice at a time: /notices lists every
# recent one, oldest first, errors said to be.
start 100 30 "" ""
wait_for "Type a message" 20 || bad "start (38): $(screen)"
# (A /set refused stays in the input line to be mended: C-u clears it.)
T send-keys -t ui "/set temp abc" Enter
wait_for "^ /set: temp: " 10 || bad "the first notice (38): $(screen)"
T send-keys -t ui C-u "/set top_k zz" Enter
wait_for "^ /set: top_k: " 10 || bad "the second notice (38): $(screen)"
lacks "^ /set: temp: " && ok || bad "the notice line shows more than the newest (38): $(screen)"
T send-keys -t ui C-u "/notices" Enter
wait_for "Notices, the newest last" 10 && ok || bad "/notices (38): $(screen)"
shows "[0-9]{2}:[0-9]{2}:[0-9]{2} template: " && shows "[0-9]{2}:[0-9]{2}:[0-9]{2} error: .*temp.*abc" &&
    shows "[0-9]{2}:[0-9]{2}:[0-9]{2} error: .*top_k.*zz" && ok || bad "the notices listed (38): $(screen)"
[ "$(screen | grep -nE "error: .*temp.*abc" | cut -d: -f1)" -lt "$(screen | grep -nE "error: .*top_k.*zz" | cut -d: -f1)" ] &&
    ok || bad "the notices out of order (38): $(screen)"
T send-keys -t ui Escape
wait_gone "Notices, the newest last" 10 && ok || bad "the notices box did not close (38)"
stop

echo "test-ui.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
