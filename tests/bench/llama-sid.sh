#!/bin/sh
# llama-sid.sh [DIR] -- fetches Debian sid's llama.cpp (llama-bench, its ggml
# CPU variants and BLAS backend) with the libraries it needs from
# deb.debian.org into DIR (/tmp/llama-sid) and writes DIR/llama-bench, which
# runs it on an older Debian (bookworm) through sid's own loader: for
# tests/bench/run.sh's LLAMA_BENCH.  Not part of make check.  Root: ggml looks
# for its backends in /usr/lib/x86_64-linux-gnu/ggml, which the wrapper binds
# in a mount namespace of its own (an empty directory is made there).
# LLAMA_BLAS=1 in the wrapper's environment adds the BLAS backend (the system's
# libblas.so.3) to the CPU variants; by default ggml has its CPU code alone, as
# the package installs it.
set -e
dir=${1:-/tmp/llama-sid}
mirror=${MIRROR:-http://deb.debian.org/debian}
pkgs="llama.cpp-tools libllama0 libggml0 libggml0-backend-blas libc6 libstdc++6 libgcc-s1 libgomp1 libssl3t64
libzstd1 zlib1g"
mkdir -p "$dir/deb" "$dir/root" "$dir/cpu/backends0"
[ -f "$dir/Packages.xz" ] || curl -fsS -o "$dir/Packages.xz" "$mirror/dists/sid/main/binary-amd64/Packages.xz"
for p in $pkgs; do
	f=$(xz -dc "$dir/Packages.xz" | awk -v p="$p" '$0 == "Package: " p { on = 1 } on && /^Filename:/ { print $2; exit }')
	[ -n "$f" ] || { echo "llama-sid.sh: $p is not in sid's index" >&2; exit 1; }
	deb="$dir/deb/$(basename "$f")"
	[ -f "$deb" ] || curl -fsS -o "$deb" "$mirror/$(echo "$f" | sed 's/+/%2b/g')"
	dpkg-deb -x "$deb" "$dir/root"
done
lib="$dir/root/usr/lib/x86_64-linux-gnu"
for f in "$lib"/ggml/backends0/libggml-cpu-*.so; do
	ln -sf "$f" "$dir/cpu/backends0/"
done
mkdir -p /usr/lib/x86_64-linux-gnu/ggml
cat > "$dir/llama-bench" <<EOF
#!/bin/sh
d=$dir/cpu; [ "\$LLAMA_BLAS" = 1 ] && d=$lib/ggml
exec unshare -m sh -c 'mount --bind "\$0" /usr/lib/x86_64-linux-gnu/ggml &&
    exec $lib/ld-linux-x86-64.so.2 --library-path $lib:$lib/llama $dir/root/usr/bin/llama-bench "\$@"' "\$d" "\$@"
EOF
chmod +x "$dir/llama-bench"
"$dir/llama-bench" --help > /dev/null
echo "$dir/llama-bench"
