#!/bin/sh
# test-hostile.sh -- broken and hostile inputs: truncated and corrupted models, hostile
# hyperparameters for every architecture, a model truncated while in use, a full disk
# under the database; never a signal death.
: "${NATTER_BIN:=./natter}"
: "${NATTER_FIXTURES:=../shared/fixtures}"
F=$NATTER_FIXTURES
ci=0
case "${CI:-}" in true|1) ci=1 ;; esac
if [ ! -d "$F/models" ]; then
	if [ $ci -eq 1 ]; then
		echo "FAIL: the shared fixtures are not at $F (CI needs them)"
		exit 1
	fi
	echo "SKIP: fixtures not found at $F"
	exit 77
fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# skip WHAT: outside CI a skip; under CI a failure (see tests/test.h).
skip() { if [ $ci -eq 1 ]; then bad "not run under CI: $*"; else echo "SKIP: $*"; fi; }
# await SECONDS DESC CMD...: polls CMD every 0.1 s until it succeeds; after
# SECONDS, a failure naming DESC.  The synchronisation of this script: it
# waits for a state, never for a time.
await() {
	secs=$1 desc=$2
	shift 2
	n=$((secs * 10))
	until "$@" 2>/dev/null; do
		n=$((n - 1))
		if [ $n -le 0 ]; then
			bad "gave up after ${secs}s waiting for $desc"
			return 1
		fi
		sleep 0.1
	done
}
tmp=$(mktemp -d)
mnt=
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export NATTER_DB="$tmp/h.db"
asan=0
"$NATTER_BIN" --version | grep -q sanitizers && asan=1

# run FILE: generate a little; the status must be below 128 (no signal
# death), and a failure must say something.
run() {
	timeout 60 "$NATTER_BIN" generate -m "$1" -p "I dreamed" -n 3 -t 1 > /dev/null 2> "$tmp/err"
	s=$?
	if [ $s -ge 124 ]; then
		bad "$2: status $s ($(head -c 300 "$tmp/err"))"
		cp "$1" "$tmp/../natter-hostile-fail.gguf" 2>/dev/null
		return
	fi
	if [ $s -ne 0 ] && [ ! -s "$tmp/err" ]; then
		bad "$2: status $s without a message"
		return
	fi
	ok
	[ $s -ne 0 ] && refused=$((refused + 1))
}

# 1. Truncated at 200 offsets spread over the file.
M="$F/models/aidreams260K-f16.gguf"
size=$(wc -c < "$M" | tr -d ' ')
refused=0
i=0
while [ $i -lt 200 ]; do
	off=$(( i * size / 200 + (i * 7919) % 97 ))
	head -c "$off" "$M" > "$tmp/t.gguf"
	run "$tmp/t.gguf" "truncated at $off"
	i=$((i + 1))
done
echo "truncations: 200 runs, $refused refused with a message, none died by a signal"
[ $refused -ge 190 ] && ok || bad "only $refused of 200 truncated files were refused"

# 2. 200 copies with random bytes flipped (half of them in the header and
# vocabulary, where the parser is).
M="$F/models/tiny-qwen2-q4_k_m.gguf"
size=$(wc -c < "$M" | tr -d ' ')
seed=12345
refused=0
i=0
while [ $i -lt 200 ]; do
	cp "$M" "$tmp/f.gguf"
	k=0
	while [ $k -lt $(( 1 + i % 8 )) ]; do
		seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
		if [ $((i % 2)) -eq 0 ]; then pos=$(( seed % 65536 )); else pos=$(( seed % size )); fi
		seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
		printf "\\$(printf %03o $(( seed % 256 )))" | dd of="$tmp/f.gguf" bs=1 seek="$pos" conv=notrunc 2>/dev/null
		k=$((k + 1))
	done
	run "$tmp/f.gguf" "flipped copy $i"
	i=$((i + 1))
done
echo "flipped bytes: 200 runs, $refused refused with a message, none died by a signal"

# 2b. Every number in the metadata of one model per architecture set to
# hostile values, one at a time (tests/hostile-hparams.py): each run ends
# in a reply or a refusal with a message, never a signal, a hang or a
# sanitizer's report.
if command -v python3 >/dev/null 2>&1; then
	python3 "${NATTER_SRCDIR:-.}/tests/hostile-hparams.py" "$NATTER_BIN" "$F/models" "$tmp" > "$tmp/hp.out" 2>&1 &&
	    ok || bad "hostile hyperparameters: $(grep -v '^hostile' "$tmp/hp.out" | head -c 3000)"
	tail -n 1 "$tmp/hp.out"
else
	skip "python3 not installed (tools/install-deps.sh installs it): hostile hyperparameters not run"
fi

# 3. The model truncated while natter reads it from the file it mapped
# (NATTER_WEIGHTS=mmap): reported, status 3.  It is truncated once natter
# has mapped it (or has ended, which then fails below).
cp "$F/models/aidreams260K-f32.gguf" "$tmp/live.gguf"
NATTER_WEIGHTS=mmap "$NATTER_BIN" bench -m "$tmp/live.gguf" -p 0 -n 30000 -r 1 -t 1 > /dev/null 2> "$tmp/bus.err" &
pid=$!
mapped() { grep -q "$tmp/live.gguf" "/proc/$pid/maps" || ! kill -0 "$pid"; }
await 60 "natter to map the model" mapped
: > "$tmp/live.gguf"
wait $pid
s=$?
if [ $asan -eq 1 ]; then
	# The sanitizer runtime takes SIGBUS for itself; only no hang is checked.
	[ $s -ne 0 ] && ok || bad "truncated while in use: status $s"
else
	[ $s -eq 3 ] && ok || bad "truncated while in use: status $s ($(cat "$tmp/bus.err"))"
	grep -q "truncated or became unreadable" "$tmp/bus.err" && ok || bad "SIGBUS message: $(cat "$tmp/bus.err")"
fi

# 3b. Weights copied into memory (NATTER_WEIGHTS=copy) leave the file
# unmapped once the model is loaded; mapped ones (=mmap) keep it mapped.
for how in copy mmap; do
	NATTER_WEIGHTS=$how "$NATTER_BIN" generate -m "$F/models/tiny-llama-q8_0.gguf" -p "Once upon" -n 30000 \
		--ignore-eos -c 32768 -t 1 > "$tmp/$how.out" 2> "$tmp/$how.err" &
	pid=$!
	loaded() { [ -s "$tmp/$how.out" ] || ! kill -0 "$pid"; }   # it streams its reply
	await 60 "natter to start its reply" loaded
	if grep -q "tiny-llama-q8_0.gguf" "/proc/$pid/maps"; then in_maps=1; else in_maps=0; fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	if [ $how = copy ]; then
		[ $in_maps -eq 0 ] && ok || bad "NATTER_WEIGHTS=copy: the file is mapped ($(head -c 300 "$tmp/$how.err"))"
	else
		[ $in_maps -eq 1 ] && ok || bad "NATTER_WEIGHTS=mmap: the file is not mapped ($(head -c 300 "$tmp/$how.err"))"
	fi
done
# 3c. The memory available is a cgroup's limit where it leaves less (a
# container with a memory limit): 800 MiB set on a cgroup above natter's
# leaves too little for a copy (a quarter of it, at least 1 GiB, is kept),
# and the weights are mapped, saying so; without the limit, copied.  A
# session whose full context's cache would not fit says so.  cgroup
# v1's memory hierarchy (this machine's); elsewhere it is not run.
cgv1=/sys/fs/cgroup/memory
cur=$(sed -n 's/^[0-9]*:\([^:]*,\)*memory\(,[^:]*\)*://p' /proc/self/cgroup)
cg="$cgv1$cur/natter-test-$$"
if [ -n "$cur" ] && mkdir "$cg" 2>/dev/null; then
	mkdir "$cg/inner" && echo $((800 << 20)) > "$cg/memory.limit_in_bytes"
	sh -c "echo \$\$ > $cg/inner/cgroup.procs && exec \"$NATTER_BIN\" bench -m \"$F/models/tiny-llama-q8_0.gguf\" -p 8 -n 0 -r 1" \
	    > "$tmp/cg.out" 2>&1
	grep -q "weights mapped from the file: a copy of its 0.0 GiB would leave too little of the 0.[78] GiB available" \
	    "$tmp/cg.out" && ok || bad "under a cgroup limit of 800 MiB: $(grep load "$tmp/cg.out")"
	# A cache of 1 GiB at a full context (a million positions of 1 KiB)
	# would not fit: the session says so at its start.
	printf 'hi\n' | sh -c "echo \$\$ > $cg/inner/cgroup.procs && exec \"$NATTER_BIN\" chat --plain --no-history \
	    -m \"$F/models/tiny-llama-q8_0.gguf\" -c 1000000 --max-tokens 1" > "$tmp/cg.out" 2>&1
	grep -q "a full context of 1000000 tokens needs 1.0 GiB for its cache, more than the 0.[78] GiB of memory available" \
	    "$tmp/cg.out" && ok || bad "a cache over the cgroup limit: $(head -c 600 "$tmp/cg.out")"
	rmdir "$cg/inner" "$cg"
	printf 'hi\n' | "$NATTER_BIN" chat --plain --no-history -m "$F/models/tiny-llama-q8_0.gguf" -c 1000000 \
	    --max-tokens 1 > "$tmp/cg.out" 2>&1
	! grep -q "needs 1.0 GiB for its cache" "$tmp/cg.out" && ok || bad "a cache warning with no limit: $(cat "$tmp/cg.out")"
	"$NATTER_BIN" bench -m "$F/models/tiny-llama-q8_0.gguf" -p 8 -n 0 -r 1 > "$tmp/cg.out" 2>&1
	grep -q "weights copied into memory" "$tmp/cg.out" && ok || bad "without the limit: $(grep load "$tmp/cg.out")"
else
	echo "SKIP: no cgroup v1 memory hierarchy to make a cgroup in: the cgroup limit is not checked"
fi
NATTER_WEIGHTS=never "$NATTER_BIN" bench -m "$F/models/aidreams260K-f32.gguf" -p 0 -n 1 -r 1 > /dev/null 2> "$tmp/err"
[ $? -ne 0 ] && grep -q "NATTER_WEIGHTS=never is none of copy, mmap, auto" "$tmp/err" && ok ||
	bad "NATTER_WEIGHTS=never: $(cat "$tmp/err")"

# 4. A full disk under the database: replies go on, the user is told, and
# what was stored before is intact.
mnt="$tmp/small"
mkdir -p "$mnt"
if mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
	db="$mnt/h.db"
	# A session that is already running when the disk fills up.
	mkfifo "$tmp/in"
	"$NATTER_BIN" chat -m "$F/models/aidreams260K-f32.gguf" --plain -n 4 --db "$db" < "$tmp/in" \
	    > "$tmp/full.out" 2> "$tmp/full.err" &
	pid=$!
	exec 3> "$tmp/in"
	echo "first message" >&3
	# The first exchange stored (the reply is written after the message)...
	# (history on a database not yet created says so and creates nothing.)
	stored() { "$NATTER_BIN" history show 1 --db "$db" 2>/dev/null | grep -q "assistant:"; }
	await 60 "the first reply to be stored" stored
	dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null   # ...then the disk filled
	# natter reads its input in order: the two messages are answered
	# before /quit is read.
	echo "second message" >&3
	echo "third message" >&3
	echo "/quit" >&3
	exec 3>&-
	wait $pid
	s=$?
	[ $s -eq 0 ] && ok || bad "chat on a full disk: status $s"
	grep -q "disk is full" "$tmp/full.err" && ok || bad "full disk message: $(head -c 400 "$tmp/full.err")"
	[ "$(wc -l < "$tmp/full.out" | tr -d " ")" -ge 3 ] && ok || bad "replies stopped on a full disk"
	# Opening a database on a full disk: refused with the reason, nothing
	# changed.  The chat's exit folded its log into the database and freed
	# that space: the disk is filled again first.
	dd if=/dev/zero of="$mnt/filler2" bs=4k 2>/dev/null
	printf 'x\n' | "$NATTER_BIN" chat -m "$F/models/aidreams260K-f32.gguf" --plain -n 2 --db "$db" 2>&1 >/dev/null |
	    tee "$tmp/open.err" | grep -q "disk is full" && ok || bad "opening on a full disk: $(cat "$tmp/open.err")"
	rm -f "$mnt/filler" "$mnt/filler2"
	"$NATTER_BIN" history show 1 --db "$db" | grep -q "first message" && ok || bad "earlier messages lost"
	umount "$mnt" && mnt=
else
	skip "cannot mount a small tmpfs here (not root?); the full-disk case was not run"
fi

# 5. valgrind: natter generate is clean (no errors, no definite leaks).  A
# sanitizer build cannot run under valgrind; its sanitizers check this run.
if [ $asan -eq 1 ]; then
	echo "valgrind: not applicable to a sanitizer build (ASan and UBSan check these runs)"
elif ! command -v valgrind >/dev/null 2>&1; then
	skip "valgrind not installed (tools/install-deps.sh installs it)"
else
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	    "$NATTER_BIN" generate -m "$F/models/aidreams260K-f32.gguf" -p "I dreamed that" -n 8 -t 2 --temp 0 \
	    > "$tmp/vg.out" 2> "$tmp/vg.err"
	s=$?
	[ $s -eq 0 ] && ok || bad "valgrind: status $s: $(head -c 1500 "$tmp/vg.err")"
fi

echo "test-hostile.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
