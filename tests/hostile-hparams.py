#!/usr/bin/env python3
# hostile-hparams.py -- every number in the metadata of one fixture model per
# architecture set, one at a time, to values a hostile or broken file could
# hold (0, 1, 65536, all bits set; 0, -1, NaN and infinity for floats; 2 for a
# boolean; every element of an array alike), then natter generate on each:
# it must run or refuse with a message, never die by a signal or hang.
#   usage: hostile-hparams.py NATTER FIXTURES/models TMPDIR
# Then keys a file should not have, or one stating fewer layers than it
# holds: expert keys in a dense family's file are ignored (the same logits
# as without them), a MoE family's file without expert_count and a
# block_count under the file's layers are refused.
# Prints a FAIL line per bad run and a summary; exit 1 on any failure.
import os
import struct
import subprocess
import sys

# One file per architecture the fixtures have (aidreams: llama with a
# SentencePiece vocabulary; tiny-llama is the same architecture).
MODELS = [
    "aidreams260K-f32.gguf", "tiny-gemma2-q4_0.gguf", "tiny-gemma3-q8_0.gguf",
    "tiny-llamamoe-q4_0.gguf", "tiny-phi3-q4_0.gguf", "tiny-phi3lr-q4_0.gguf",
    "tiny-qwen2-q4_0.gguf", "tiny-qwen2moe-q4_0.gguf", "tiny-qwen3-q4_k_m.gguf",
    "tiny-qwen3moe-q4_k_m.gguf", "tiny-qwen35-q8_0.gguf",
]

# GGUF value types: size and struct format of the fixed-size ones.
SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
FORMAT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
          10: "<Q", 11: "<q", 12: "<d"}
T_STRING, T_ARRAY, T_BOOL = 8, 9, 7


def walk(b):
    """Every metadata entry: (key, type, start, value, end, element type,
    count), with START its first byte, VALUE its value's, END past it; the
    element type and count are an array's (else the type and 1).  Then
    the offset where the tensor infos start, as a last item."""
    if b[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    n_kv = struct.unpack_from("<Q", b, 16)[0]
    off = 24
    for _ in range(n_kv):
        start = off
        kl = struct.unpack_from("<Q", b, off)[0]
        key = b[off + 8:off + 8 + kl].decode()
        off += 8 + kl
        t = struct.unpack_from("<I", b, off)[0]
        off += 4
        at, n, val = t, 1, off
        if t == T_STRING:
            off += 8 + struct.unpack_from("<Q", b, off)[0]
        elif t == T_ARRAY:
            at, n = struct.unpack_from("<IQ", b, off)
            off += 12
            val = off
            if at == T_STRING:
                for _ in range(n):
                    off += 8 + struct.unpack_from("<Q", b, off)[0]
            else:
                off += SIZE[at] * n
        else:
            off += SIZE[t]
        yield key, t, start, val, off, at, n
    yield off


def numbers(b):
    """(key, type, count, offset) of every number or array of numbers."""
    return [(key, at, n, val) for key, t, start, val, end, at, n in list(walk(b))[:-1]
            if at not in (T_STRING, T_ARRAY)]


def with_keys(b, keys, drop=()):
    """B with KEYS ((name, u32 value) pairs) added at the end of the
    metadata and the keys named in DROP removed; the tensor data moved to
    the next alignment boundary, its offsets being relative to it."""
    n_t = struct.unpack_from("<Q", b, 8)[0]
    entries = list(walk(b))
    infos, kept, align = entries.pop(), [], 32
    for key, t, start, val, end, at, n in entries:
        if key == "general.alignment":
            align = struct.unpack_from(FORMAT[t], b, val)[0]
        if key not in drop:
            kept.append(bytes(b[start:end]))
    off = infos
    for _ in range(n_t):
        nl = struct.unpack_from("<Q", b, off)[0]
        off += 8 + nl
        nd = struct.unpack_from("<I", b, off)[0]
        off += 4 + 8 * nd + 4 + 8
    data = (off + align - 1) // align * align
    for k, v in keys:
        kb = k.encode()
        kept.append(struct.pack("<Q", len(kb)) + kb + struct.pack("<II", 4, v))
    head = b[:8] + struct.pack("<QQ", n_t, len(kept)) + b"".join(kept) + b[infos:off]
    return head + b"\0" * (-len(head) % align) + b[data:]


def logits(natter, path, env):
    """The logits of a short prompt (bytes), or None with the error."""
    out = path + ".logits"
    r = subprocess.run([natter, "eval", "-m", path, "--tokens", "1,2,3,4", "--logits-out", out, "-t", "1",
                        "--kv-type", "f32"], capture_output=True, timeout=120, env=env)
    if r.returncode != 0:
        return None, r.stderr.decode(errors="replace").strip()
    return open(out, "rb").read(), ""


def keys_checks(natter, models, tmp, env):
    """The added, dropped and understated keys; returns the failures."""
    path = os.path.join(tmp, "keys.gguf")
    failed = 0
    for name in MODELS:
        src = open(os.path.join(models, name), "rb").read()
        arch = next(v for k, v in strings(src) if k == "general.architecture")
        blocks = next(src_u32 for k, t, n, o in numbers(src) if k == arch + ".block_count"
                      for src_u32 in [struct.unpack_from(FORMAT[t], src, o)[0]])
        has_experts = any(k == arch + ".expert_count" for k, t, n, o in numbers(src))
        base, err = logits(natter, os.path.join(models, name), env)
        if base is None:
            print(f"FAIL: {name}: {err[:300]}")
            failed += 1
            continue
        if not has_experts:
            # A dense model's file with expert keys (16 experts of 1 wide):
            # a dense family ignores them; one that may have experts (llama)
            # misses their tensors.
            open(path, "wb").write(with_keys(src, [(arch + ".expert_count", 16), (arch + ".expert_used_count", 2),
                                                   (arch + ".expert_feed_forward_length", 1)]))
            got, err = logits(natter, path, env)
            if got != base and not (got is None and "ffn_gate_inp.weight is missing" in err):
                print(f"FAIL: {name} with expert keys: {'other logits' if got else err[:300]}")
                failed += 1
        elif arch == "qwen2moe":
            # Experts in every layer: without expert_count the file is broken.
            open(path, "wb").write(with_keys(src, [], drop=(arch + ".expert_count",)))
            got, err = logits(natter, path, env)
            if got is not None or "expert_count is missing" not in err:
                print(f"FAIL: {name} without expert_count: {'ran' if got else err[:300]}")
                failed += 1
        # One block fewer than the file holds.
        open(path, "wb").write(with_keys(src, [(arch + ".block_count", blocks - 1)], drop=(arch + ".block_count",)))
        got, err = logits(natter, path, env)
        if got is not None or f"past the {blocks - 1} blocks" not in err:
            print(f"FAIL: {name} with block_count {blocks - 1} of {blocks}: {'ran' if got else err[:300]}")
            failed += 1
    return failed


def strings(b):
    """(key, value) of every string in the metadata."""
    return [(key, b[val + 8:end].decode(errors="replace")) for key, t, start, val, end, at, n in list(walk(b))[:-1]
            if t == T_STRING]


def hostile(t):
    if FORMAT[t][1] in "fd":
        return [0.0, -1.0, float("nan"), float("inf")]
    if t == T_BOOL:
        return [2]
    bits = 8 * SIZE[t]
    signed = FORMAT[t][1].islower()
    vals = [0, 1, 65536 % (1 << bits), (1 << bits) - 1]
    return sorted({v - (1 << bits) if signed and v >= 1 << (bits - 1) else v for v in vals})


def main():
    natter, models, tmp = sys.argv[1:4]
    env = dict(os.environ, NATTER_DB=os.path.join(tmp, "hparams.db"))
    path = os.path.join(tmp, "hparams.gguf")
    runs = ran = refused = failed = 0
    for name in MODELS:
        src = open(os.path.join(models, name), "rb").read()
        for key, t, n, off in numbers(src):
            # The vocabulary's strings, scores and types are the tokenizer's
            # (fuzz-gguf and test-tok); its special token ids are here.
            if key.startswith("tokenizer.") and not key.endswith("_id"):
                continue
            for v in hostile(t):
                b = bytearray(src)
                for i in range(n):
                    struct.pack_into(FORMAT[t], b, off + i * SIZE[t], v)
                with open(path, "wb") as f:
                    f.write(b)
                runs += 1
                try:
                    r = subprocess.run([natter, "generate", "-m", path, "-p", "Hello there", "-n", "2",
                                        "-t", "1", "-c", "64"], capture_output=True, timeout=120, env=env)
                    status, err = r.returncode, r.stderr.decode(errors="replace").strip()
                except subprocess.TimeoutExpired:
                    status, err = "a hang", ""
                what = f"{name} {key}={v}"
                if "Sanitizer" in err or "runtime error" in err:
                    print(f"FAIL: {what}: a sanitizer report: {err[:600]}")
                elif status == 0:
                    ran += 1
                    continue
                elif not isinstance(status, int) or status < 0 or status >= 124:
                    print(f"FAIL: {what}: status {status}: {err[:600]}")
                elif not err:
                    print(f"FAIL: {what}: status {status} without a message")
                else:
                    refused += 1
                    continue
                failed += 1
    # Both outcomes must occur, or the values changed nothing (or all).
    if ran < runs // 10 or refused < runs // 10:
        print(f"FAIL: of {runs} runs {ran} ran and {refused} were refused: the changes did not take")
        failed += 1
    kfailed = keys_checks(natter, models, tmp, env)
    failed += kfailed
    print(f"hostile hyperparameters: {len(MODELS)} architectures' files, {runs} runs: {ran} ran, "
          f"{refused} refused with a message, {failed} failed ({kfailed} of keys added or understated)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
