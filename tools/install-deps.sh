#!/bin/sh
# install-deps.sh -- installs the Debian 12 packages natter needs to build and test.
set -e
pkgs="build-essential autoconf automake pkg-config libncurses-dev libreadline-dev
libcjson-dev libopenblas-dev libsqlite3-dev sqlite3 tmux valgrind
libcurl4-openssl-dev libmicrohttpd-dev python3 curl jq openssl clang faketime"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=
else
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Skip the network when everything is already there.
missing=
for p in $pkgs; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# Node and npm for test-serve's run of the official openai package (a
# machine that has them from elsewhere keeps its own).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
	$SUDO apt-get update -q
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -q $missing
fi
