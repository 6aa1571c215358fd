#!/usr/bin/env python3
# hub-server.py -- a local stand-in for the Hugging Face hub and its CDN, for tests/test-pull.sh.
#
# Serves the files under ROOT/OWNER/NAME/ as repository OWNER/NAME:
#   hub:  GET /api/models/OWNER/NAME/tree/main   the file list (lfs.oid = SHA-256), paged with Link
#         GET /OWNER/NAME/resolve/main/PATH      302 to the CDN, with X-Linked-Etag and X-Linked-Size
#   cdn:  GET /blobs/OWNER/NAME/PATH             the bytes, with Range support (206)
# The two listen on different ports of 127.0.0.1 (ports chosen by the kernel,
# written to PORTFILE as "HUB CDN").  Every request is logged to LOG, one line
# each, saying whether an Authorization header came (never its value).
# Faults, per file name: --cut NAME:FRACTION (the first download stops after
# that fraction and the connection is closed), --corrupt NAME (the hub
# announces a wrong SHA-256), --nosize NAME (no size anywhere, no
# Content-Length), --fake-size NAME:BYTES (the hub announces that size),
# --no-lfs NAME (the file list gives no lfs.oid: only the resolve reply's
# headers carry the SHA-256), --direct NAME (the hub answers the resolve
# itself, 200 with the SHA-256 as its ETag, no redirect), --rate NAME:BYTES
# (the CDN sends that many bytes a second, for a progress bar to show),
# --no-length NAME (the CDN sends no Content-Length and closes; the hub still
# announces the size), --redirect-loop NAME (the hub's resolve redirects to
# itself, forever), --big-header NAME (the CDN's reply has a 200 000-byte
# header line), --status-203 NAME (the CDN ignores Range and answers 203, a
# transforming proxy's "Non-Authoritative Information", with the whole
# file).  --fake-size takes any JSON number (1e30, 1.5) as well.
# --tls CERT:KEY serves both over HTTPS (PEM files);
# --proxy adds an HTTP proxy that tunnels CONNECT (as a company's does for
# HTTPS), its port written third to PORTFILE, each tunnel logged.
# Faults, per repository: --loop-pages REPO (the last page of the file list
# links back to the first), --endless-pages REPO (every page links to one
# more, empty past the end).
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit, parse_qs

ap = argparse.ArgumentParser()
ap.add_argument("--root", required=True)
ap.add_argument("--portfile", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--token", default=None)
ap.add_argument("--gated", action="append", default=[])
ap.add_argument("--cut", action="append", default=[])
ap.add_argument("--corrupt", action="append", default=[])
ap.add_argument("--nosize", action="append", default=[])
ap.add_argument("--fake-size", action="append", default=[])
ap.add_argument("--page-size", type=int, default=0)
ap.add_argument("--no-lfs", action="append", default=[])
ap.add_argument("--direct", action="append", default=[])
ap.add_argument("--rate", action="append", default=[])
ap.add_argument("--no-length", action="append", default=[])
ap.add_argument("--redirect-loop", action="append", default=[])
ap.add_argument("--big-header", action="append", default=[])
ap.add_argument("--loop-pages", action="append", default=[])
ap.add_argument("--endless-pages", action="append", default=[])
ap.add_argument("--status-203", action="append", default=[])
ap.add_argument("--tls", default=None)
ap.add_argument("--proxy", action="store_true")
args = ap.parse_args()


SCHEME = "https" if args.tls else "http"


def number(s):
    """An int when S is one, else a float (1e30, 1.5): what the file list says as given."""
    try:
        return int(s)
    except ValueError:
        return float(s)


cut = {c.split(":")[0]: float(c.split(":")[1]) for c in args.cut}
fake = {c.split(":")[0]: number(c.split(":")[1]) for c in args.fake_size}
rate = {c.split(":")[0]: int(c.split(":")[1]) for c in args.rate}
already_cut = set()
log_lock = threading.Lock()
ports = {}


def log(line):
    with log_lock:
        with open(args.log, "a") as f:
            f.write(line + "\n")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def announced(name, path):
    """(size, sha256) the hub announces for a file; None where it says nothing."""
    if name in args.nosize:
        return None, None
    size = fake.get(name, os.path.getsize(path))
    sha = sha256_of(path)
    if name in args.corrupt:
        sha = hashlib.sha256(b"not the content" + sha.encode()).hexdigest()
    return size, sha


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def auth(self):
        h = self.headers.get("Authorization")
        if h is None:
            return "no"
        return "yes" if args.token and h == "Bearer " + args.token else "bad"

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Hub(Base):
    def do_GET(self):
        u = urlsplit(self.path)
        path = unquote(u.path)
        auth = self.auth()
        log("hub GET %s auth=%s" % (path, auth))
        parts = path.strip("/").split("/")
        if len(parts) >= 6 and parts[0] == "api" and parts[1] == "models" and parts[4] == "tree":
            repo = parts[2] + "/" + parts[3]
            kind = "tree"
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo = parts[0] + "/" + parts[1]
            kind = "resolve"
        else:
            return self.send_json(404, {"error": "Not found"})
        rdir = os.path.join(args.root, repo)
        if not os.path.isdir(rdir):
            return self.send_json(401, {"error": "Repository not found"})
        if repo in args.gated and auth != "yes":
            return self.send_json(401, {"error": "Access to model %s is restricted." % repo})
        if kind == "tree":
            entries = []
            for dp, dn, fn in os.walk(rdir):
                dn.sort()
                for n in sorted(fn):
                    full = os.path.join(dp, n)
                    rel = os.path.relpath(full, rdir)
                    size, sha = announced(n, full)
                    e = {"type": "file", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()}
                    if size is not None:
                        e["size"] = size
                    if sha is not None and n.endswith(".gguf") and n not in args.no_lfs:
                        e["lfs"] = {"oid": sha, "size": size, "pointerSize": 134}
                    entries.append(e)
            extra = {}
            if args.page_size:
                cur = int(parse_qs(u.query).get("cursor", ["0"])[0])
                page = entries[cur:cur + args.page_size]
                tree = SCHEME + "://127.0.0.1:%d/api/models/%s/tree/main?recursive=true" % (ports["hub"], repo)
                if cur + args.page_size < len(entries) or repo in args.endless_pages:
                    extra["Link"] = '<%s&cursor=%d>; rel="next"' % (tree, cur + args.page_size)
                elif repo in args.loop_pages:
                    extra["Link"] = '<%s>; rel="next"' % tree   # the first page's own URL
                entries = page
            return self.send_json(200, entries, extra)
        rel = "/".join(parts[4:])
        full = os.path.join(rdir, rel)
        if not os.path.isfile(full):
            return self.send_json(404, {"error": "Entry not found"})
        size, sha = announced(os.path.basename(full), full)
        if os.path.basename(full) in args.redirect_loop:
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if os.path.basename(full) in args.direct:
            # Served by the hub itself: the checksum is the ETag, no redirect.
            with open(full, "rb") as f:
                data = f.read()
            self.send_response(200)
            if sha is not None:
                self.send_header("ETag", '"%s"' % sha)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(302)
        self.send_header("Location", SCHEME + "://127.0.0.1:%d/blobs/%s/%s" % (ports["cdn"], repo, rel))
        if sha is not None:
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("ETag", '"%s"' % sha)
        if size is not None:
            self.send_header("X-Linked-Size", str(size))
        self.send_header("Content-Length", "0")
        self.end_headers()


class Cdn(Base):
    def do_GET(self):
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        log("cdn GET %s range=%s auth=%s" % (path, rng or "-", self.auth()))
        if not path.startswith("/blobs/"):
            return self.send_json(404, {"error": "Not found"})
        full = os.path.join(args.root, path[len("/blobs/"):])
        if not os.path.isfile(full):
            return self.send_json(404, {"error": "Not found"})
        name = os.path.basename(full)
        with open(full, "rb") as f:
            data = f.read()
        start = 0
        if name in args.status_203:
            self.send_response(203)
        elif rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        if name in args.big_header:
            self.send_header("X-Padding", "p" * 200000)
        if name in args.nosize or name in args.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in cut and name not in already_cut and start == 0:
            already_cut.add(name)
            n = int(len(data) * cut[name])
            self.wfile.write(body[:n])
            self.wfile.flush()
            log("cdn cut %s after %d bytes" % (path, n))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if name in rate:
            step = max(1, rate[name] // 20)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(body)


class Proxy(BaseHTTPRequestHandler):
    """CONNECT host:port: a tunnel to 127.0.0.1 only, bytes both ways."""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        log("proxy CONNECT %s" % self.path)
        if host != "127.0.0.1":
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        up = socket.create_connection((host, int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(up, self.connection), daemon=True)
        t.start()
        pump(self.connection, up)
        t.join()
        up.close()
        self.close_connection = True


hub = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
cdn = ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
hub.daemon_threads = cdn.daemon_threads = True
if args.tls:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*args.tls.split(":"))
    hub.socket = ctx.wrap_socket(hub.socket, server_side=True)
    cdn.socket = ctx.wrap_socket(cdn.socket, server_side=True)
ports["hub"] = hub.server_address[1]
ports["cdn"] = cdn.server_address[1]
threading.Thread(target=cdn.serve_forever, daemon=True).start()
extra = ""
if args.proxy:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    extra = " %d" % proxy.server_address[1]
tmp = args.portfile + ".tmp"
with open(tmp, "w") as f:
    f.write("%d %d%s\n" % (ports["hub"], ports["cdn"], extra))
os.rename(tmp, args.portfile)
try:
    hub.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
