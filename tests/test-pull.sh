#!/bin/sh
# test-pull.sh -- natter pull against a local stand-in for the Hugging Face hub (tests/hub-server.py),
# and natter models: full, paged, resumed, corrupt, gated, full-disk downloads; the token never shown.
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
hub_pid=; mnt=
sock="natter-pull-$$"
cleanup() {
	tmux -L "$sock" kill-server 2>/dev/null
	[ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null
	[ -n "$mnt" ] && umount "$mnt" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

if ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: python3 is needed for the test hub (tools/install-deps.sh installs it)"
	exit 77
fi
# Debian's python3 (what tools/install-deps.sh installs) when it is there:
# a version manager's shim first in PATH costs a second per call.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
if [ ! -d "$F/models" ]; then
	echo "SKIP: fixtures not found"
	exit 77
fi

# Usage errors: status 2 and a message.
"$NATTER_BIN" pull >/dev/null 2>"$tmp/err"; check "pull without a repo" 2 $?
"$NATTER_BIN" pull "not-a-repo" 2>"$tmp/err"; check "pull bad repo" 2 $?
grep -q "is not a repository name" "$tmp/err" && ok || bad "bad repo message: $(cat "$tmp/err")"
"$NATTER_BIN" pull "org/x:notes.txt" 2>"$tmp/err"; check "pull a non-GGUF" 2 $?
"$NATTER_BIN" pull "org/x:../../etc/passwd.gguf" 2>"$tmp/err"; check "pull with .." 2 $?
# A vision projector is a GGUF file, but not a model: said so, not "not .gguf".
"$NATTER_BIN" pull "org/x:sub/mmproj-model-f16.gguf" 2>"$tmp/err"; check "pull an mmproj: status" 2 $?
grep -q "sub/mmproj-model-f16.gguf is a multimodal projector (mmproj)" "$tmp/err" && ok || bad "mmproj message: $(cat "$tmp/err")"
grep -q "natter reads .gguf files" "$tmp/err" && bad "an mmproj is said not to be .gguf: $(cat "$tmp/err")" || ok
# ".." as a part of a name is no path component; an HF_ENDPOINT that is no
# http(s) address is refused before anything is tried.
HF_ENDPOINT=garbage "$NATTER_BIN" pull "org/x:a..b.gguf" 2>"$tmp/err"; check "HF_ENDPOINT garbage status" 2 $?
check "HF_ENDPOINT garbage message" "natter: pull: HF_ENDPOINT 'garbage' is not an http:// or https:// address" \
	"$(cat "$tmp/err")"

# wait_hub PID PORTFILE: until the test hub PID has written its ports (at
# most 10 s), or has died.
wait_hub() {
	i=0
	while [ ! -s "$2" ] && [ $i -lt 100 ]; do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1; i=$((i + 1))
	done
}

# The repositories.
token="hf_test_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
root=$tmp/root
mkdir -p "$root/org/tiny-GGUF/sub" "$root/org/cut-GGUF" "$root/org/cut2-GGUF" "$root/org/bad-GGUF" \
	"$root/org/gated-GGUF" "$root/org/nosize-GGUF" "$root/org/huge-GGUF" "$root/org/none-GGUF" "$root/org/hdr-GGUF" \
	"$root/org/slow-GGUF" "$root/org/nocut-GGUF" "$root/org/nosha-GGUF" "$root/org/size-GGUF" "$root/org/redir-GGUF" \
	"$root/org/loop-GGUF" "$root/org/endless-GGUF" "$root/org/bigsize-GGUF" "$root/org/frac-GGUF" "$root/org/n203-GGUF"
cp "$F/models/tiny-llama-q4_k_m.gguf" "$root/org/tiny-GGUF/tiny-llama-Q4_K_M.gguf"
cp "$F/models/tiny-llama-q8_0.gguf" "$root/org/tiny-GGUF/sub/tiny-llama-Q8_0.gguf"
echo "a model card" > "$root/org/tiny-GGUF/README.md"
head -c 4000 /dev/urandom > "$root/org/tiny-GGUF/mmproj-tiny-f16.gguf"
head -c 3000000 /dev/urandom > "$root/org/cut-GGUF/cut-Q4_K_M.gguf"
head -c 2000000 /dev/urandom > "$root/org/cut2-GGUF/cut2-Q4_K_M.gguf"
head -c 1000000 /dev/urandom > "$root/org/bad-GGUF/bad-Q4_K_M.gguf"
cp "$F/models/tiny-qwen2-q4_0.gguf" "$root/org/gated-GGUF/gated-Q4_0.gguf"
head -c 3000000 /dev/urandom > "$root/org/nosize-GGUF/nosize.gguf"
head -c 100000 /dev/urandom > "$root/org/huge-GGUF/huge.gguf"
head -c 100000 /dev/urandom > "$root/org/none-GGUF/model-Q8_0.gguf"
head -c 1500000 /dev/urandom > "$root/org/slow-GGUF/slow-Q4_K_M.gguf"
cp "$F/models/tiny-llama-q8_0.gguf" "$root/org/nocut-GGUF/nocut.gguf"
cp "$F/models/tiny-llama-q4_0.gguf" "$root/org/nosha-GGUF/nosha.gguf"
for f in linked-ok linked-bad etag-ok etag-bad; do
	head -c 300000 /dev/urandom > "$root/org/hdr-GGUF/$f.gguf"
done
for f in short short2; do head -c 200000 /dev/urandom > "$root/org/size-GGUF/$f.gguf"; done
for f in long long2 bighdr; do head -c 300000 /dev/urandom > "$root/org/size-GGUF/$f.gguf"; done
head -c 100000 /dev/urandom > "$root/org/redir-GGUF/redir-Q4_K_M.gguf"
for f in a-Q8_0 b-Q4_0 c-Q4_K_M; do head -c 1000 /dev/urandom > "$root/org/loop-GGUF/$f.gguf"; done
head -c 1000 /dev/urandom > "$root/org/endless-GGUF/e-Q4_K_M.gguf"
head -c 1000 /dev/urandom > "$root/org/bigsize-GGUF/big-Q4_K_M.gguf"
head -c 1000 /dev/urandom > "$root/org/frac-GGUF/frac-Q4_K_M.gguf"
head -c 1000000 /dev/urandom > "$root/org/n203-GGUF/n203-Q4_K_M.gguf"

"$PY" "$NATTER_SRCDIR/tests/hub-server.py" --root "$root" --portfile "$tmp/ports" --log "$tmp/hub.log" \
	--token "$token" --gated org/gated-GGUF --cut cut-Q4_K_M.gguf:0.4 --cut cut2-Q4_K_M.gguf:0.4 \
	--corrupt bad-Q4_K_M.gguf --nosize nosize.gguf --fake-size huge.gguf:10000000000000 --page-size 2 \
	--rate slow-Q4_K_M.gguf:500000 --no-lfs linked-ok.gguf --no-lfs linked-bad.gguf --corrupt linked-bad.gguf \
	--no-lfs etag-ok.gguf --no-lfs etag-bad.gguf --direct etag-ok.gguf --direct etag-bad.gguf --corrupt etag-bad.gguf \
	--nosize nocut.gguf --cut nocut.gguf:0.5 --nosize nosha.gguf \
	--fake-size short.gguf:250000 --fake-size short2.gguf:250000 --no-length short2.gguf \
	--fake-size long.gguf:1000 --fake-size long2.gguf:1000 --no-length long2.gguf --big-header bighdr.gguf \
	--redirect-loop redir-Q4_K_M.gguf --loop-pages org/loop-GGUF --endless-pages org/endless-GGUF \
	--fake-size big-Q4_K_M.gguf:1e30 --fake-size frac-Q4_K_M.gguf:1.5 --cut n203-Q4_K_M.gguf:0.4 \
	--status-203 n203-Q4_K_M.gguf \
	2>"$tmp/hub.err" &
hub_pid=$!
wait_hub "$hub_pid" "$tmp/ports"
if [ ! -s "$tmp/ports" ]; then
	bad "the test hub did not start: $(cat "$tmp/hub.err")"
	exit 1
fi
read -r hub_port cdn_port < "$tmp/ports"
export HF_ENDPOINT="http://127.0.0.1:$hub_port"
unset HF_TOKEN
export XDG_DATA_HOME="$tmp/data"
export HOME="$tmp/home"
models=$XDG_DATA_HOME/natter/models
mkdir -p "$HOME"

# 1. REPO alone: the list (paged by the hub, two entries a page), the Q4_K_M chosen and said so.
"$NATTER_BIN" pull org/tiny-GGUF >"$tmp/o1" 2>"$tmp/e1"; check "pull REPO status" 0 $?
check "pull prints the path" "$models/tiny-llama-Q4_K_M.gguf" "$(cat "$tmp/o1")"
grep -q "sub/tiny-llama-Q8_0.gguf" "$tmp/e1" && ok || bad "the list lacks the file of the second page: $(cat "$tmp/e1")"
grep -q "taking tiny-llama-Q4_K_M.gguf (the Q4_K_M" "$tmp/e1" && ok || bad "the choice is not said: $(cat "$tmp/e1")"
grep -q "mmproj" "$tmp/e1" && bad "a vision projector is listed as a model" || ok
check "tree pages requested (4 files, 2 a page)" 2 "$(grep -c "hub GET /api/models/org/tiny-GGUF/tree/main" "$tmp/hub.log")"
cmp -s "$models/tiny-llama-Q4_K_M.gguf" "$root/org/tiny-GGUF/tiny-llama-Q4_K_M.gguf" && ok || bad "downloaded bytes differ"
grep -q "SHA-256 verified" "$tmp/e1" && ok || bad "no verification said: $(cat "$tmp/e1")"
grep -q "^natter pull: 100% " "$tmp/e1" && ok || bad "no plain progress lines off a terminal: $(cat "$tmp/e1")"
grep -q "cdn GET /blobs/org/tiny-GGUF/tiny-llama-Q4_K_M.gguf range=- auth=no" "$tmp/hub.log" && ok ||
	bad "the CDN was not reached through the redirect: $(cat "$tmp/hub.log")"
[ ! -e "$models/tiny-llama-Q4_K_M.gguf.part" ] && ok || bad "a .part file was left"

# REPO:FILE in a folder; a second pull of the same file is a no-op.
"$NATTER_BIN" pull org/tiny-GGUF:sub/tiny-llama-Q8_0.gguf >"$tmp/o2" 2>"$tmp/e2"; check "pull REPO:FILE status" 0 $?
cmp -s "$models/tiny-llama-Q8_0.gguf" "$root/org/tiny-GGUF/sub/tiny-llama-Q8_0.gguf" && ok || bad "Q8_0 bytes differ"
n=$(grep -c "cdn GET" "$tmp/hub.log")
"$NATTER_BIN" pull org/tiny-GGUF:sub/tiny-llama-Q8_0.gguf >/dev/null 2>"$tmp/e3"; check "second pull status" 0 $?
grep -q "already there (SHA-256 verified)" "$tmp/e3" && ok || bad "second pull message: $(cat "$tmp/e3")"
check "second pull downloads nothing" "$n" "$(grep -c "cdn GET" "$tmp/hub.log")"
# A file of the same size that is not the hub's (one byte changed) is not
# taken for it, and not overwritten.
cp "$models/tiny-llama-Q8_0.gguf" "$tmp/q8.keep"
printf 'X' | dd of="$models/tiny-llama-Q8_0.gguf" bs=1 seek=100 conv=notrunc 2>/dev/null
cp "$models/tiny-llama-Q8_0.gguf" "$tmp/q8.changed"
"$NATTER_BIN" pull org/tiny-GGUF:sub/tiny-llama-Q8_0.gguf >"$tmp/o3" 2>"$tmp/e3b"; check "same size, other bytes: status" 1 $?
grep -q "tiny-llama-Q8_0.gguf already exists and is not the file on the hub (its SHA-256 is" "$tmp/e3b" && ok ||
    bad "same size, other bytes: $(cat "$tmp/e3b")"
cmp -s "$models/tiny-llama-Q8_0.gguf" "$tmp/q8.changed" && ok || bad "the changed file was overwritten"
check "nothing printed as the path" "" "$(cat "$tmp/o3")"
mv "$tmp/q8.keep" "$models/tiny-llama-Q8_0.gguf"
"$NATTER_BIN" pull org/tiny-GGUF:nope.gguf 2>"$tmp/e4"; check "missing file status" 1 $?
grep -q "has no file nope.gguf" "$tmp/e4" && ok || bad "missing file message: $(cat "$tmp/e4")"
"$NATTER_BIN" pull org/none-GGUF 2>"$tmp/e5"; check "no Q4_K_M status" 1 $?
grep -q "no single-file Q4_K_M" "$tmp/e5" && grep -q "model-Q8_0.gguf" "$tmp/e5" && ok || bad "no Q4_K_M message: $(cat "$tmp/e5")"
"$NATTER_BIN" pull org/absent-GGUF 2>"$tmp/e6"; check "absent repo status" 1 $?
grep -q "does not exist or needs an access token" "$tmp/e6" && ok || bad "absent repo message: $(cat "$tmp/e6")"
# --dir: made with its parents (repeated and trailing slashes too); a file
# in its place is refused before any byte, by name.
"$NATTER_BIN" pull --dir "$tmp/dirs//a/b/" org/tiny-GGUF:sub/tiny-llama-Q8_0.gguf >/dev/null 2>"$tmp/e7"
check "--dir a//b/ status" 0 $?
cmp -s "$tmp/dirs/a/b/tiny-llama-Q8_0.gguf" "$root/org/tiny-GGUF/sub/tiny-llama-Q8_0.gguf" && ok ||
	bad "--dir a//b/: $(cat "$tmp/e7")"
: > "$tmp/afile"
n=$(grep -c "cdn GET" "$tmp/hub.log")
"$NATTER_BIN" pull --dir "$tmp/afile" org/tiny-GGUF:sub/tiny-llama-Q8_0.gguf >/dev/null 2>"$tmp/e8"
check "--dir a file: status" 1 $?
grep -qF "natter: pull: cannot create $tmp/afile: Not a directory" "$tmp/e8" && ok || bad "--dir a file: $(cat "$tmp/e8")"
check "--dir a file: nothing downloaded" "$n" "$(grep -c "cdn GET" "$tmp/hub.log")"

# 2. Cut at 40 %: without retries the part file keeps exactly what came, and
# the next run resumes it with a Range request.
size=3000000; cutat=$((size * 4 / 10))
"$NATTER_BIN" pull --retries 0 org/cut-GGUF:cut-Q4_K_M.gguf >/dev/null 2>"$tmp/c1"; check "cut pull status" 1 $?
grep -q "run the same command to resume" "$tmp/c1" && ok || bad "cut message: $(cat "$tmp/c1")"
check "part file after the cut" "$cutat" "$(wc -c < "$models/cut-Q4_K_M.gguf.part" | tr -d ' ')"
"$NATTER_BIN" models >"$tmp/m0" 2>&1
grep -q "cut-Q4_K_M.gguf .*unfinished natter pull" "$tmp/m0" && ok || bad "models does not show the part: $(cat "$tmp/m0")"
"$NATTER_BIN" pull org/cut-GGUF:cut-Q4_K_M.gguf >/dev/null 2>"$tmp/c2"; check "resumed pull status" 0 $?
grep -q "resuming cut-Q4_K_M.gguf" "$tmp/c2" && ok || bad "resume not said: $(cat "$tmp/c2")"
grep -q "cdn GET /blobs/org/cut-GGUF/cut-Q4_K_M.gguf range=bytes=$cutat- " "$tmp/hub.log" && ok ||
	bad "no Range request from byte $cutat: $(grep cut-Q4 "$tmp/hub.log")"
cmp -s "$models/cut-Q4_K_M.gguf" "$root/org/cut-GGUF/cut-Q4_K_M.gguf" && ok || bad "resumed bytes differ"
# With retries (the default), one run resumes by itself.
"$NATTER_BIN" pull org/cut2-GGUF:cut2-Q4_K_M.gguf >/dev/null 2>"$tmp/c3"; check "auto-resumed pull status" 0 $?
grep -q "cdn GET /blobs/org/cut2-GGUF/cut2-Q4_K_M.gguf range=bytes=$((2000000 * 4 / 10))- " "$tmp/hub.log" && ok ||
	bad "no automatic Range request: $(grep cut2 "$tmp/hub.log")"
cmp -s "$models/cut2-Q4_K_M.gguf" "$root/org/cut2-GGUF/cut2-Q4_K_M.gguf" && ok || bad "auto-resumed bytes differ"
# No size and no SHA-256 said, the body cut where the connection closes: what
# arrived is checked as GGUF, and a cut one never gets the name.  The next run
# (not cut) gets it whole.
"$NATTER_BIN" pull --dir "$tmp/ns" org/nocut-GGUF:nocut.gguf >/dev/null 2>"$tmp/n1"; check "cut, no SHA: status" 1 $?
grep -q "no SHA-256 for nocut.gguf, and what arrived is not a whole GGUF file" "$tmp/n1" && ok ||
	bad "cut, no SHA: message: $(cat "$tmp/n1")"
[ ! -e "$tmp/ns/nocut.gguf" ] && [ ! -e "$tmp/ns/nocut.gguf.part" ] && ok || bad "cut, no SHA: a file was kept"
"$NATTER_BIN" pull --dir "$tmp/ns" org/nocut-GGUF:nocut.gguf >/dev/null 2>"$tmp/n2"; check "whole, no SHA: status" 0 $?
grep -q "only its form as GGUF was checked" "$tmp/n2" && ok || bad "whole, no SHA: message: $(cat "$tmp/n2")"
cmp -s "$tmp/ns/nocut.gguf" "$root/org/nocut-GGUF/nocut.gguf" && ok || bad "whole, no SHA: bytes differ"
# An earlier run's part of a file the hub gives no SHA-256 for is not resumed.
head -c 5000 /dev/urandom > "$tmp/ns/nosha.gguf.part"
"$NATTER_BIN" pull --dir "$tmp/ns" org/nosha-GGUF:nosha.gguf >/dev/null 2>"$tmp/n3"; check "stale part, no SHA: status" 0 $?
grep -q "from an earlier run, and the hub gives no SHA-256 .*starting again" "$tmp/n3" && ok ||
	bad "stale part, no SHA: message: $(cat "$tmp/n3")"
cmp -s "$tmp/ns/nosha.gguf" "$root/org/nosha-GGUF/nosha.gguf" && ok || bad "stale part, no SHA: bytes differ"
# An earlier run's part of another file of the name (the SHA-256 known):
# resumed, found wrong by its sum, and downloaded again whole, once.
mkdir -p "$tmp/ns2"
head -c 100000 /dev/urandom > "$tmp/ns2/tiny-llama-Q4_K_M.gguf.part"
"$NATTER_BIN" pull --dir "$tmp/ns2" org/tiny-GGUF:tiny-llama-Q4_K_M.gguf >/dev/null 2>"$tmp/n4"
check "stale part of another file: status" 0 $?
grep -q "from an earlier run was not of this file (the SHA-256 differs): downloading it again" "$tmp/n4" && ok ||
	bad "stale part of another file: message: $(cat "$tmp/n4")"
cmp -s "$tmp/ns2/tiny-llama-Q4_K_M.gguf" "$root/org/tiny-GGUF/tiny-llama-Q4_K_M.gguf" && ok ||
	bad "stale part of another file: bytes differ"

# 3. A wrong SHA-256: refused, nothing kept.
"$NATTER_BIN" pull org/bad-GGUF:bad-Q4_K_M.gguf >/dev/null 2>"$tmp/b1"; check "corrupt pull status" 1 $?
grep -q "is corrupt: its SHA-256 is $(sha256sum "$root/org/bad-GGUF/bad-Q4_K_M.gguf" | cut -c1-64)" "$tmp/b1" && ok ||
	bad "corrupt message: $(cat "$tmp/b1")"
[ ! -e "$models/bad-Q4_K_M.gguf" ] && [ ! -e "$models/bad-Q4_K_M.gguf.part" ] && ok || bad "a corrupt download was kept"

# The SHA-256 from the download's headers alone (a file list without lfs.oid): X-Linked-Etag on
# the hub's redirect, or the ETag of a file the hub serves itself.  Right: verified; wrong: refused.
for f in linked etag; do
	sum=$(sha256sum "$root/org/hdr-GGUF/$f-ok.gguf" | cut -c1-64)
	"$NATTER_BIN" pull "org/hdr-GGUF:$f-ok.gguf" >/dev/null 2>"$tmp/$f-ok"; check "$f sum: status" 0 $?
	grep -q "SHA-256 verified: $sum" "$tmp/$f-ok" && ok || bad "$f sum: not verified: $(cat "$tmp/$f-ok")"
	cmp -s "$models/$f-ok.gguf" "$root/org/hdr-GGUF/$f-ok.gguf" && ok || bad "$f sum: bytes differ"
	"$NATTER_BIN" pull "org/hdr-GGUF:$f-bad.gguf" >/dev/null 2>"$tmp/$f-bad"; check "$f sum, wrong: status" 1 $?
	grep -q "is corrupt: its SHA-256 is $(sha256sum "$root/org/hdr-GGUF/$f-bad.gguf" | cut -c1-64), the hub says" \
		"$tmp/$f-bad" && ok || bad "$f sum, wrong: message: $(cat "$tmp/$f-bad")"
	[ ! -e "$models/$f-bad.gguf" ] && [ ! -e "$models/$f-bad.gguf.part" ] && ok || bad "$f sum, wrong: kept"
done
grep -q "cdn GET /blobs/org/hdr-GGUF/etag-" "$tmp/hub.log" && bad "a file the hub serves itself went to the CDN" || ok
grep -q "cdn GET /blobs/org/hdr-GGUF/linked-ok.gguf" "$tmp/hub.log" && ok || bad "linked-ok did not come through the redirect"

# The progress bar on a terminal (a tmux pane): percent, bar, bytes of the total, rate, ETA.
if command -v tmux >/dev/null 2>&1; then
	T() { tmux -L "$sock" "$@"; }
	T new-session -d -s pull -x 120 -y 8 "env HF_ENDPOINT='$HF_ENDPOINT' XDG_DATA_HOME='$XDG_DATA_HOME' HOME='$HOME' \
		'$NATTER_BIN' pull org/slow-GGUF:slow-Q4_K_M.gguf; echo PULL-EXIT=\$?; sleep 60"
	bar_re=' +[0-9]+\.[0-9]% \[[#-]{30}\] [0-9.]+ (B|KiB|MiB) / 1\.4 MiB  [0-9.]+ (KiB|MiB)/s  ETA 0:00:[0-9][0-9]'
	seen=; i=0
	while [ $i -lt 300 ]; do
		scr=$(T capture-pane -t pull -p 2>/dev/null)
		if [ -z "$seen" ] && echo "$scr" | grep -Eq -- "$bar_re"; then seen=$(echo "$scr" | grep -Eo -- "$bar_re" | head -n 1); fi
		echo "$scr" | grep -q "PULL-EXIT=" && break
		sleep 0.1; i=$((i + 1))
	done
	[ -n "$seen" ] && ok || bad "no progress bar with bytes, rate and ETA on the terminal: $scr"
	echo "$scr" | grep -q "PULL-EXIT=0" && ok || bad "the pull on a terminal: $scr"
	echo "progress bar seen: $seen"
	cmp -s "$models/slow-Q4_K_M.gguf" "$root/org/slow-GGUF/slow-Q4_K_M.gguf" && ok || bad "the slow download's bytes differ"
	T kill-server 2>/dev/null
else
	echo "note: tmux is not installed; the progress bar on a terminal was not checked"
fi

# The hub's list and its server disagree on a file's size: a complete reply
# shorter than listed (with a Content-Length, or without one and then a 416
# that names the server's size), or longer (said up front, or found as the
# bytes come), is no broken connection: refused at once, nothing kept, and
# the progress never passes 100 %.
for f in short short2 long long2; do
	"$NATTER_BIN" pull --dir "$tmp/sz" "org/size-GGUF:$f.gguf" >/dev/null 2>"$tmp/sz-$f"; check "$f: status" 1 $?
	[ ! -e "$tmp/sz/$f.gguf" ] && [ ! -e "$tmp/sz/$f.gguf.part" ] && ok || bad "$f: a file was kept: $(ls "$tmp/sz")"
	grep -q "run the same command to resume" "$tmp/sz-$f" && bad "$f: a resume is promised: $(cat "$tmp/sz-$f")" || ok
	pct=$(sed -n 's/^natter pull: \([0-9]*\)% .*/\1/p' "$tmp/sz-$f" | sort -n | tail -n 1)
	[ "${pct:-0}" -le 100 ] && ok || bad "$f: progress past 100 %: $(cat "$tmp/sz-$f")"
done
grep -q "the server's copy of short.gguf is 200000 bytes but the hub says 250000: it is shorter" "$tmp/sz-short" && ok ||
	bad "short reply: $(cat "$tmp/sz-short")"
check "short reply: one request" 1 "$(grep -c "cdn GET /blobs/org/size-GGUF/short.gguf " "$tmp/hub.log")"
grep -q "the server's copy of short2.gguf is 200000 bytes but the hub says 250000: it is shorter" "$tmp/sz-short2" && ok ||
	bad "short reply without a length: $(cat "$tmp/sz-short2")"
check "short reply without a length: two requests" 2 "$(grep -c "cdn GET /blobs/org/size-GGUF/short2.gguf " "$tmp/hub.log")"
grep -q "the server's copy of long.gguf is 300000 bytes but the hub says 1000: it is longer" "$tmp/sz-long" && ok ||
	bad "long reply: $(cat "$tmp/sz-long")"
check "long reply: one request" 1 "$(grep -c "cdn GET /blobs/org/size-GGUF/long.gguf " "$tmp/hub.log")"
grep -q "the server sent more of long2.gguf than the 1000 bytes the hub says" "$tmp/sz-long2" && ok ||
	bad "long reply without a length: $(cat "$tmp/sz-long2")"
check "long reply without a length: one request" 1 "$(grep -c "cdn GET /blobs/org/size-GGUF/long2.gguf " "$tmp/hub.log")"
# A reply with a header too large to read is a bad reply, not "out of memory", and not tried again.
"$NATTER_BIN" pull --dir "$tmp/sz" org/size-GGUF:bighdr.gguf >/dev/null 2>"$tmp/bh"; check "huge header: status" 1 $?
grep -q "trying again would not help: a bad reply from http://127.0.0.1:$cdn_port/blobs/org/size-GGUF/bighdr.gguf: its headers are larger than libcurl reads" \
	"$tmp/bh" && ok || bad "huge header: message: $(cat "$tmp/bh")"
check "huge header: one request" 1 "$(grep -c "cdn GET /blobs/org/size-GGUF/bighdr.gguf " "$tmp/hub.log")"
# A redirect loop is said to be one, not "HTTP 302".
"$NATTER_BIN" pull org/redir-GGUF:redir-Q4_K_M.gguf >/dev/null 2>"$tmp/rl"; check "redirect loop: status" 1 $?
grep -q "too many redirects (more than 5; .*): a redirect loop" "$tmp/rl" && ok || bad "redirect loop: message: $(cat "$tmp/rl")"
grep -q "HTTP 302" "$tmp/rl" && bad "redirect loop reported as HTTP 302: $(cat "$tmp/rl")" || ok
check "redirect loop: six hops, once" 6 "$(grep -c "hub GET /org/redir-GGUF/resolve/" "$tmp/hub.log")"
# A file list whose Link leads back to a page already read, or on and on.
"$NATTER_BIN" pull org/loop-GGUF >/dev/null 2>"$tmp/lp"; check "looping list: status" 1 $?
grep -q "the hub's file list for org/loop-GGUF loops: page 2 links back to page 1" "$tmp/lp" && ok ||
	bad "looping list: message: $(cat "$tmp/lp")"
check "looping list: pages read" 2 "$(grep -c "hub GET /api/models/org/loop-GGUF/tree/" "$tmp/hub.log")"
# A file named, its list unavailable: downloaded without it; pulled again,
# it is there, unchecked and said so (not called a different file).
"$NATTER_BIN" pull org/loop-GGUF:a-Q8_0.gguf --dir "$tmp/unl" >/dev/null 2>"$tmp/ul1"; check "no list, a file named: status" 0 $?
cmp -s "$tmp/unl/a-Q8_0.gguf" "$root/org/loop-GGUF/a-Q8_0.gguf" && ok || bad "no list: bytes differ: $(cat "$tmp/ul1")"
"$NATTER_BIN" pull org/loop-GGUF:a-Q8_0.gguf --dir "$tmp/unl" >/dev/null 2>"$tmp/ul2"; check "no list, pulled again: status" 0 $?
grep -q "a-Q8_0.gguf is already there (without the hub's file list there is nothing to check it against" "$tmp/ul2" && ok ||
	bad "no list, pulled again: $(cat "$tmp/ul2")"
"$NATTER_BIN" pull org/endless-GGUF >/dev/null 2>"$tmp/ep"; check "endless list: status" 1 $?
grep -q "the hub's file list for org/endless-GGUF goes on for more than 100 pages" "$tmp/ep" && ok ||
	bad "endless list: message: $(cat "$tmp/ep")"
# A size in the list that is no whole number of bytes (1e30 would not even
# fit in 64 bits) is refused, naming the file.
"$NATTER_BIN" pull org/bigsize-GGUF >/dev/null 2>"$tmp/bs"; check "size 1e30: status" 1 $?
grep -q "the hub's file list for org/bigsize-GGUF gives big-Q4_K_M.gguf the size 1e+30, which is not a whole number of bytes" \
	"$tmp/bs" && ok || bad "size 1e30: message: $(cat "$tmp/bs")"
"$NATTER_BIN" pull org/frac-GGUF >/dev/null 2>"$tmp/fs"; check "size 1.5: status" 1 $?
grep -q "gives frac-Q4_K_M.gguf the size 1.5, which is not a whole number of bytes" "$tmp/fs" && ok ||
	bad "size 1.5: message: $(cat "$tmp/fs")"

# 4. A gated model: 401 without a token, refused with a wrong one, fine with
# the right one; the token goes to the hub and never to the CDN.
"$NATTER_BIN" pull org/gated-GGUF:gated-Q4_0.gguf >/dev/null 2>"$tmp/g1"; check "gated without token" 1 $?
grep -q "set HF_TOKEN" "$tmp/g1" && ok || bad "no-token message: $(cat "$tmp/g1")"
HF_TOKEN=wrong "$NATTER_BIN" pull org/gated-GGUF:gated-Q4_0.gguf >/dev/null 2>"$tmp/g2"; check "gated wrong token" 1 $?
grep -q "refused access to the repository org/gated-GGUF (HTTP 401) with the token in HF_TOKEN" "$tmp/g2" && ok ||
	bad "wrong-token message: $(cat "$tmp/g2")"
HF_TOKEN=$token "$NATTER_BIN" pull org/gated-GGUF:gated-Q4_0.gguf >"$tmp/g3o" 2>"$tmp/g3"; check "gated with token" 0 $?
cmp -s "$models/gated-Q4_0.gguf" "$root/org/gated-GGUF/gated-Q4_0.gguf" && ok || bad "gated bytes differ"
grep -q "hub GET /org/gated-GGUF/resolve/main/gated-Q4_0.gguf auth=yes" "$tmp/hub.log" && ok || bad "the hub did not get the token"
grep "cdn GET /blobs/org/gated-GGUF/" "$tmp/hub.log" | grep -qv "auth=no" && bad "the token went to the CDN" || ok
grep -q "cdn GET /blobs/org/gated-GGUF/gated-Q4_0.gguf" "$tmp/hub.log" && ok || bad "the gated file did not come from the CDN"

# 5. Not enough space: refused before any byte when the size is known.
"$NATTER_BIN" pull org/huge-GGUF:huge.gguf >/dev/null 2>"$tmp/h1"; check "too big status" 1 $?
grep -q "huge.gguf needs 9.*free: nothing was downloaded" "$tmp/h1" && ok || bad "too big message: $(cat "$tmp/h1")"
grep -q "cdn GET /blobs/org/huge-GGUF" "$tmp/hub.log" && bad "the CDN was asked for a file that cannot fit" || ok
[ ! -e "$models/huge.gguf.part" ] && ok || bad "a part file was left for a refused download"
mnt=$tmp/small
mkdir -p "$mnt"
if mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
	# A known size larger than the disk: refused up front.
	XDG_DATA_HOME=$mnt "$NATTER_BIN" pull org/cut-GGUF:cut-Q4_K_M.gguf >/dev/null 2>"$tmp/s1"; check "small disk status" 1 $?
	grep -q "needs 2.9 MiB more but $mnt/natter/models has only" "$tmp/s1" && ok || bad "small disk message: $(cat "$tmp/s1")"
	# No size announced: the disk fills while writing; the part is removed.
	XDG_DATA_HOME=$mnt "$NATTER_BIN" pull org/nosize-GGUF:nosize.gguf >/dev/null 2>"$tmp/s2"; check "ENOSPC status" 1 $?
	grep -q "is full .*the partial file was removed" "$tmp/s2" && ok || bad "ENOSPC message: $(cat "$tmp/s2")"
	check "nothing left on the full disk" "" "$(ls "$mnt/natter/models")"
	umount "$mnt" && mnt=
else
	echo "note: cannot mount a small tmpfs here (not root?); the write-time ENOSPC case was not run"
fi

# A .part that is not natter's own file: a symbolic link (in a folder
# others may write, it would empty and overwrite what it points to), a
# pipe.  Refused, the link's target and the pipe untouched.
mkdir -p "$tmp/odd"
echo "precious" > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/odd/model-Q8_0.gguf.part"
"$NATTER_BIN" pull org/none-GGUF:model-Q8_0.gguf --dir "$tmp/odd" >/dev/null 2>"$tmp/sy1"; check "a linked part: status" 1 $?
grep -q "model-Q8_0.gguf.part is a symbolic link, not a download of natter's: remove it" "$tmp/sy1" && ok ||
	bad "a linked part: message: $(cat "$tmp/sy1")"
check "a linked part: its target untouched" "precious" "$(cat "$tmp/victim")"
rm "$tmp/odd/model-Q8_0.gguf.part" && mkfifo "$tmp/odd/model-Q8_0.gguf.part"
"$NATTER_BIN" pull org/none-GGUF:model-Q8_0.gguf --dir "$tmp/odd" >/dev/null 2>"$tmp/sy2"; check "a pipe for a part: status" 1 $?
grep -q "model-Q8_0.gguf.part is not a file, not a download of natter's" "$tmp/sy2" && ok ||
	bad "a pipe for a part: message: $(cat "$tmp/sy2")"
[ -p "$tmp/odd/model-Q8_0.gguf.part" ] && ok || bad "the pipe was removed"
[ ! -e "$tmp/odd/model-Q8_0.gguf" ] && ok || bad "a file was made beside a linked part"

# A resume answered 203 with the whole file (a transforming proxy's "Non-
# Authoritative Information"): taken as a server that does not resume, the
# part started again, not the whole file appended to it (which went past
# the file's size, was thrown away and fetched a third time).
"$NATTER_BIN" pull org/n203-GGUF:n203-Q4_K_M.gguf --dir "$tmp/n203" >/dev/null 2>"$tmp/n1"; check "203: status" 0 $?
cmp -s "$tmp/n203/n203-Q4_K_M.gguf" "$root/org/n203-GGUF/n203-Q4_K_M.gguf" && ok || bad "203: bytes differ"
grep -q "the server does not resume downloads: starting n203-Q4_K_M.gguf again" "$tmp/n1" && ok || bad "203: $(cat "$tmp/n1")"
check "203: the file fetched twice (cut, then whole)" 2 "$(grep -c "cdn GET /blobs/org/n203-GGUF/" "$tmp/hub.log")"

# Over HTTPS through a proxy that tunnels (CONNECT), as behind a company's
# proxy: the proxy's "200 Connection established" is not the server's
# answer.  A download cut at 40% resumes from where it stopped (it was
# taken for a server that ignores Range, and each resume began at 0).
mkdir -p "$tmp/troot/org/tls-GGUF"
head -c 2000000 /dev/urandom > "$tmp/troot/org/tls-GGUF/tls-Q4_K_M.gguf"
tls=$NATTER_SRCDIR/tests/data/tls
"$PY" "$NATTER_SRCDIR/tests/hub-server.py" --root "$tmp/troot" --portfile "$tmp/tports" --log "$tmp/thub.log" \
	--tls "$tls/localhost.crt:$tls/localhost.key" --proxy --cut tls-Q4_K_M.gguf:0.4 2>"$tmp/thub.err" &
thub_pid=$!
wait_hub "$thub_pid" "$tmp/tports"
read -r thub_port tcdn_port tproxy_port < "$tmp/tports"
if [ -n "$tproxy_port" ]; then
	HF_ENDPOINT="https://127.0.0.1:$thub_port" CURL_CA_BUNDLE="$tls/localhost.crt" https_proxy="http://127.0.0.1:$tproxy_port" \
		no_proxy= NO_PROXY= "$NATTER_BIN" pull org/tls-GGUF:tls-Q4_K_M.gguf --dir "$tmp/tls" >/dev/null 2>"$tmp/tl1"
	check "HTTPS through a tunnelling proxy: status" 0 $?
	cmp -s "$tmp/tls/tls-Q4_K_M.gguf" "$tmp/troot/org/tls-GGUF/tls-Q4_K_M.gguf" && ok || bad "HTTPS through a proxy: bytes differ"
	grep -q "proxy CONNECT 127.0.0.1:$tcdn_port" "$tmp/thub.log" && ok || bad "the proxy was not used: $(cat "$tmp/thub.log")"
	check "the resume asked for the rest" "range=- range=bytes=800000-" \
		"$(sed -n 's|^cdn GET /blobs/org/tls-GGUF/tls-Q4_K_M.gguf \(range=[^ ]*\).*|\1|p' "$tmp/thub.log" | tr '\n' ' ' | sed 's/ $//')"
	grep -q "does not resume" "$tmp/tl1" && bad "the proxy's answer taken for the server's: $(cat "$tmp/tl1")" || ok
else
	bad "the HTTPS hub did not start: $(cat "$tmp/thub.err")"
fi
kill "$thub_pid" 2>/dev/null

# 6. natter models: name, size, architecture, quantization, last use from the history.
db=$tmp/hist.db
printf 'hello\n' | "$NATTER_BIN" chat --plain -m "$models/tiny-llama-Q4_K_M.gguf" --db "$db" -n 2 >/dev/null 2>&1
"$NATTER_BIN" models --db "$db" >"$tmp/m1" 2>&1; check "models status" 0 $?
grep -Eq "^tiny-llama-Q4_K_M.gguf +[0-9.]+ KiB +llama +Q4_K_M +20[0-9][0-9]-" "$tmp/m1" && ok || bad "models Q4_K_M line: $(cat "$tmp/m1")"
grep -Eq "^tiny-llama-Q8_0.gguf +.* llama +Q8_0 +never" "$tmp/m1" && ok || bad "models Q8_0 line: $(cat "$tmp/m1")"
grep -Eq "^gated-Q4_0.gguf +.* qwen2 +Q4_0 " "$tmp/m1" && ok || bad "models qwen2 line: $(cat "$tmp/m1")"
grep -Eq "^cut-Q4_K_M.gguf .*not readable" "$tmp/m1" && ok || bad "models: a non-GGUF file: $(cat "$tmp/m1")"
XDG_DATA_HOME=$tmp/empty "$NATTER_BIN" models >"$tmp/m2"; check "models on an empty folder" 0 $?
grep -q "No models in $tmp/empty/natter/models" "$tmp/m2" && ok || bad "empty models message: $(cat "$tmp/m2")"
# The config file's db is the history the last use comes from, as for the
# other commands; a folder named that cannot be read is an error.
mkdir -p "$tmp/cfg/natter"
echo "db = $db" > "$tmp/cfg/natter/config"
XDG_CONFIG_HOME=$tmp/cfg "$NATTER_BIN" models >"$tmp/m3" 2>&1; check "models, db from the config: status" 0 $?
grep -Eq "^tiny-llama-Q4_K_M.gguf +.* Q4_K_M +20[0-9][0-9]-" "$tmp/m3" && ok || bad "models ignores the config's db: $(cat "$tmp/m3")"
"$NATTER_BIN" models --dir "$tmp/absent" >"$tmp/m4" 2>&1; check "models --dir a missing folder" 1 $?
grep -q "models: $tmp/absent: No such file or directory" "$tmp/m4" && ok || bad "missing folder message: $(cat "$tmp/m4")"

# 7. The token never appears in any file natter wrote or any output.
if grep -rqF "$token" "$tmp" --exclude=hub.log; then
	bad "the token appears in: $(grep -rlF "$token" "$tmp")"
else
	ok
fi
grep -qF "$token" "$tmp/hub.log" && bad "the token reached the test hub's log" || ok

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
