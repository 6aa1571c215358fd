#!/bin/sh
# test-plain.sh -- chat --plain when its surroundings fail: a closed or full standard output, a busy history, a conversation deleted by another natter.
: "${NATTER_BIN:=./natter}"
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check LABEL EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected [$2] got [$3]"; fi
}
if ! command -v sqlite3 > /dev/null 2>&1; then echo "SKIP: sqlite3 not installed"; exit 77; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"
unset NATTER_DB
q() { sqlite3 -batch -noheader "$1" "$2"; }

M="$tmp/tiny.gguf"
"$NATTER_BIN" mkmodel --preset tiny --type Q8_0 -o "$M" > /dev/null 2> "$tmp/err" ||
	{ echo "FAIL: mkmodel: $(cat "$tmp/err")" >&2; exit 1; }

# A standard output whose reader is gone before natter writes (as with
# | head -c1, without the race): a FIFO opened for reading and writing,
# then for writing alone, then its reading end closed.  A write to fd 5
# then fails with EPIPE (or kills the writer with SIGPIPE).
mkfifo "$tmp/closed"
exec 4<> "$tmp/closed"
exec 5> "$tmp/closed"
exec 4<&-

# The reply stops at the first piece it cannot show and is kept as a reply
# stopped with Ctrl-C is: the message and its reply, marked stopped.  The
# chat says why and fails; no signal kills it half-way.
db="$tmp/pipe.db"
echo hi | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 40 --seed 1 >&5 2> "$tmp/err"
check "chat --plain into a closed pipe: status" 1 $?
grep -q "standard output: writing failed: Broken pipe; the reply stopped there (saved as stopped, generation 1); the chat stops" \
	"$tmp/err" && ok || bad "chat --plain into a closed pipe: $(cat "$tmp/err")"
check "the message and its reply, stopped" "user|hi|1|stopped|cancelled" \
	"$(q "$db" "SELECT m.role, m.content, g.id, g.end_reason, g.state FROM messages m JOIN messages a
	    ON a.parent_id = m.id JOIN generations g ON g.message_id = a.id")"

# Output lost after a command (its text was flushed only when the next
# line had been read and stored): the next message is not read at all.
db="$tmp/cmd.db"
printf '/params\nhi\n' | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 4 >&5 2> "$tmp/err"
check "a closed pipe after /params: status" 1 $?
grep -q "standard output: writing failed: Broken pipe; the chat stops" "$tmp/err" && ok ||
	bad "a closed pipe after /params: $(cat "$tmp/err")"
check "a closed pipe after /params: nothing stored" 0 "$(q "$db" "SELECT count(*) FROM messages")"
exec 5>&-

# A full disk under standard output: the same, with its reason.
if [ -w /dev/full ]; then
	db="$tmp/full.db"
	echo hi | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 40 --seed 1 > /dev/full 2> "$tmp/err"
	check "chat --plain > /dev/full: status" 1 $?
	grep -q "standard output: writing failed: No space left on device; the reply stopped there" "$tmp/err" && ok ||
		bad "chat --plain > /dev/full: $(cat "$tmp/err")"
	check "chat --plain > /dev/full: the reply stored as stopped" stopped \
		"$(q "$db" "SELECT end_reason FROM generations")"
fi

# A history another process holds locked (sqlite3 in a transaction it
# has begun) for the whole turn, from the start of a session whose model
# is not recorded yet: the model at the start, the message, and the
# reply's second try at the message all wait out the busy timeout and
# fail.  One line says the turn was not saved; the chat goes on.
db="$tmp/busy.db"
"$NATTER_BIN" mkmodel --preset tiny --type F32 -o "$tmp/other.gguf" > /dev/null 2>&1
echo hi | "$NATTER_BIN" chat --plain -m "$tmp/other.gguf" --db "$db" -n 2 > /dev/null 2>&1
mkfifo "$tmp/lock.in" "$tmp/lock.out"
sqlite3 "$db" < "$tmp/lock.in" > "$tmp/lock.out" &
locker=$!
exec 6> "$tmp/lock.in"
echo "BEGIN IMMEDIATE; SELECT 'locked';" >&6
read -r locked < "$tmp/lock.out"
check "the history locked" locked "$locked"
printf 'hello\n/params\n' | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 4 --seed 1 > "$tmp/out" 2> "$tmp/err"
check "a busy history: status" 0 $?
echo "COMMIT;" >&6
exec 6>&-
wait $locker
check "a busy history: one line says so" 1 "$(grep -c "not saved" "$tmp/err")"
grep -q "stayed busy (another natter is writing); the new conversation was not saved" "$tmp/err" && ok ||
	bad "a busy history: $(cat "$tmp/err")"
grep -q "^temp " "$tmp/out" && ok || bad "a busy history: the chat did not go on: $(cat "$tmp/out")"
check "a busy history: nothing saved" 1 "$(q "$db" "SELECT count(*) FROM conversations")"

# The conversation being chatted in deleted by another natter between two
# turns.  The session is driven through a FIFO, each step waiting for
# what chat --plain printed (/stats names the conversation).  One line
# says so; the later turns are saved in a new conversation, with no error.
db="$tmp/deleted.db"
echo first | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 2 > /dev/null 2>&1
mkfifo "$tmp/in"
"$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 4 --seed 1 < "$tmp/in" 2> "$tmp/err" | {
	exec 6> "$tmp/in"
	printf 'hi\n/stats\n' >&6
	while IFS= read -r line; do
		case $line in "stored as generation"*) echo "$line" > "$tmp/stats1"; break;; esac
	done
	# Another conversation after it: the new one gets a number of its own.
	echo other | "$NATTER_BIN" chat --plain -m "$M" --db "$db" -n 2 > /dev/null 2>&1
	"$NATTER_BIN" history delete 2 --db "$db" > /dev/null 2>&1
	printf 'again\n/stats\nonce more\n/regen\n/stats\n' >&6
	exec 6>&-
	cat > "$tmp/out"
}
check "the session's conversation" "stored as generation 2 of conversation 2" "$(cat "$tmp/stats1")"
check "a deleted conversation: one line" "[natter: conversation 2 was deleted from the history by another program; \
this chat is saved from your last message on as a new conversation, 4 (the messages before it are not saved again)]" \
	"$(grep -v "would repeat the same reply" "$tmp/err")"
check "the turns after it, saved" "stored as generation 4 of conversation 4
stored as generation 6 of conversation 4" "$(grep "^stored as" "$tmp/out")"
check "the new conversation" "user again|assistant|user once more|assistant" \
	"$(q "$db" "SELECT role || CASE role WHEN 'user' THEN ' ' || content ELSE '' END FROM messages
	    WHERE conversation_id = 4 ORDER BY seq" | tr '\n' '|' | sed 's/|$//')"
check "the regenerated reply's alternatives" 2 "$(q "$db" "SELECT count(*) FROM generations WHERE message_id =
	    (SELECT MAX(id) FROM messages WHERE conversation_id = 4)")"

echo "test-plain.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
