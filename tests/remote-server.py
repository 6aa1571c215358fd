#!/usr/bin/env python3
# remote-server.py -- replays recorded OpenAI-compatible replies (tests/data/remote/*.sse) for tests/test-remote*.sh.
#
# POST /v1/chat/completions answers with the fixture named by the request's
# "model" (tests/data/remote/MODEL.sse); GET /v1/models lists the fixtures
# (or only --only NAME; and --pad-models N more).  With --tls-cert FILE --tls-key FILE it speaks
# HTTPS with that certificate.  Listens on 127.0.0.1, a port the kernel chooses,
# written to PORTFILE.  Each request is logged to LOG as one JSON line: the
# path, the model, the request's field names and sampling values, whether an
# Authorization header came and whether it held the expected key (never its
# value), and how the reply went ("sent", "cut", "client left after N
# events", "refused").
#
# A fixture is directives, a blank line, then the body sent byte for byte:
#   status: 200                  the status (default 200)
#   header: Name: value          a response header (repeatable)
#   framing: chunked|close       chunked transfer encoding (default), or a body
#                                that ends when the connection closes
#   delay-ms: N                  wait N ms before each event of the body
#   cut-after: N                 send N bytes of the body, then drop the connection
#   stall-after: N               send N bytes, then send nothing until the client leaves
#   refuse-fields: a,b           if the request has any of these fields, answer
#   refuse-over: N               (or if it has more than N messages,
#   refuse-longer: N             or a message longer than N characters) answer
#   refuse-status: 400           with this status
#   refuse-body: {...}           and this body instead
#   refuse-as: stream            or: status 200, an event stream whose body is refuse-body
#   require-key: yes             unless the bearer token is $REMOTE_TEST_KEY, answer 401
#   key-body: {...}              with this body
#   echo-key: yes                {KEY} in the body becomes the bearer token received
#   # ...                        a comment
import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--portfile", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--only", default=None)
ap.add_argument("--tls-cert", default=None)
ap.add_argument("--tls-key", default=None)
ap.add_argument("--pad-models", type=int, default=0)   # this many more models listed, "pad-N"
args = ap.parse_args()

log_lock = threading.Lock()
expected_key = os.environ.get("REMOTE_TEST_KEY", "")


def log(entry):
    with log_lock:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def load(name):
    path = os.path.join(args.dir, os.path.basename(name) + ".sse")
    if not os.path.isfile(path):
        return None
    raw = open(path, "rb").read()
    head, _, body = raw.partition(b"\n\n")
    d = {"status": 200, "headers": [], "framing": "chunked", "body": body}
    for line in head.decode("utf-8").split("\n"):
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition(":")
        v = v.strip()
        if k == "header":
            d["headers"].append(tuple(x.strip() for x in v.split(":", 1)))
        elif k in ("status", "delay-ms", "cut-after", "stall-after", "refuse-status", "refuse-over",
                   "refuse-longer"):
            d[k] = int(v)
        else:
            d[k] = v
    return d


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def token(self):
        h = self.headers.get("Authorization")
        if h is None:
            return None
        return h[len("Bearer "):] if h.startswith("Bearer ") else h

    def auth(self):
        t = self.token()
        if t is None:
            return "none"
        return "ok" if expected_key and t == expected_key else "bad"

    def send_json(self, status, obj):
        b = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        if self.path.rstrip("/") != "/v1/models":
            self.send_json(404, {"error": {"message": "no such path", "type": "not_found"}})
            return
        names = sorted(n[:-4] for n in os.listdir(args.dir) if n.endswith(".sse"))
        if args.only:
            names = [args.only]
        log({"path": self.path, "auth": self.auth()})
        names += ["pad-%06d" % i for i in range(args.pad_models)]
        self.send_json(200, {"object": "list", "data": [
            {"id": n, "object": "model", "created": 1732000000, "owned_by": "replay"} for n in names]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        entry = {"path": self.path, "auth": self.auth()}
        try:
            req = json.loads(raw)
        except ValueError:
            req = {}
        entry["fields"] = sorted(req.keys())
        for k in ("model", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repetition_penalty",
                  "seed", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options",
                  "chat_template_kwargs"):
            if k in req:
                entry[k] = req[k]
        entry["messages"] = [m.get("role") + ":" + str(m.get("content")) for m in req.get("messages", [])]
        fx = load(req.get("model", "")) if self.path == "/v1/chat/completions" else None
        if fx is None:
            entry["outcome"] = "404"
            log(entry)
            self.send_json(404, {"error": {"message": "no fixture for this request", "type": "not_found"}})
            return
        refuse = [f for f in fx.get("refuse-fields", "").split(",") if f]
        over = fx.get("refuse-over")
        longer = fx.get("refuse-longer")
        if any(f in req for f in refuse) or (over is not None and len(req.get("messages", [])) > over) or \
                (longer is not None and any(len(str(m.get("content"))) > longer for m in req.get("messages", []))):
            entry["outcome"] = "refused"
            log(entry)
            if fx.get("refuse-as") == "stream":
                self.reply(200, dict(fx, headers=[("Content-Type", "text/event-stream")]),
                           fx.get("refuse-body", "").encode() + b"\n\n")
                return
            b = fx.get("refuse-body", "{}").encode()
            self.send_response(fx.get("refuse-status", 400))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)
            return
        body = fx["body"]
        status = fx["status"]
        if fx.get("require-key") == "yes" and entry["auth"] != "ok":
            status = 401
            body = fx.get("key-body", "").encode()
            fx = dict(fx, headers=[("Content-Type", "application/json")])
        if fx.get("echo-key") == "yes":
            body = body.replace(b"{KEY}", (self.token() or "").encode())
        entry["outcome"] = self.reply(status, fx, body)
        log(entry)

    def reply(self, status, fx, body):
        chunked = fx["framing"] == "chunked"
        self.send_response(status)
        for k, v in fx["headers"]:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        limit = fx.get("cut-after", fx.get("stall-after", len(body)))
        events = body[:limit].split(b"\n\n")
        parts = [e + b"\n\n" for e in events[:-1]] + ([events[-1]] if events[-1] else [])
        sent = 0
        try:
            for i, p in enumerate(parts):
                if fx.get("delay-ms"):
                    time.sleep(fx["delay-ms"] / 1000)
                self.write(p, chunked)
                sent = i + 1
            if "stall-after" in fx:
                # Nothing more, until the client gives up (its read timeout).
                self.connection.settimeout(60)
                while self.connection.recv(1):
                    pass
                return "stalled; the client left"
            if "cut-after" in fx:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return "cut after %d bytes" % limit
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True
            return "client left after %d events" % sent
        return "sent"

    def write(self, b, chunked):
        if chunked:
            self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
        else:
            self.wfile.write(b)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass   # a client that hangs up is what several tests do


srv = Server(("127.0.0.1", 0), Handler)
if args.tls_cert:
    # HTTPS: the handshake happens as each connection is accepted; one that
    # fails (a client refusing the certificate) is dropped by the server loop.
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(args.portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.portfile + ".tmp", args.portfile)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
