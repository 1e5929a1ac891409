#!/usr/bin/env python3
"""A webhook receiver for the test suite: verifies every delivery with the PyPI
`standardwebhooks` package (not refbridge's own code) and records it.

Prints `listening PORT` once bound (port 0 picks a free one). Control it over HTTP:

- POST /control  JSON: `secrets` (list: each delivery is verified against each),
  `fail_status` (answer this status instead of 200; null to recover), `retry_after`
  (a Retry-After header with the failures), `hang_ms` and `hang_count` (hold that many
  requests that long before answering).
- GET /state     JSON: `deliveries` (each request: webhook-id, type, request_id, position,
  verified_with (indexes of the secrets that verify it), answered (the status sent back)),
  `verify_failures`, `in_flight`.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
state = {
    "secrets": [],
    "fail_status": None,
    "retry_after": None,
    "hang_ms": 0,
    "hang_count": 0,
    "deliveries": [],
    "verify_failures": 0,
    "in_flight": 0,
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            snapshot = json.loads(json.dumps({k: v for k, v in state.items() if k != "secrets"}))
        self._json(200, snapshot)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.path == "/control":
            with lock:
                state.update(json.loads(body))
            self._json(200, {"ok": True})
            return
        headers = {
            "webhook-id": self.headers.get("webhook-id", ""),
            "webhook-timestamp": self.headers.get("webhook-timestamp", ""),
            "webhook-signature": self.headers.get("webhook-signature", ""),
        }
        with lock:
            secrets = list(state["secrets"])
        verified_with = []
        for i, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified_with.append(i)
            except WebhookVerificationError:
                pass
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        record = {
            "webhook_id": headers["webhook-id"],
            "type": event.get("type"),
            "id": event.get("id"),
            "request_id": event.get("request_id"),
            "position": event.get("position"),
            "verified_with": verified_with,
            "signatures": len(headers["webhook-signature"].split()),
            "answered": None,
            "t": time.time(),
        }
        with lock:
            if not verified_with:
                state["verify_failures"] += 1
            state["deliveries"].append(record)
            hang = state["hang_count"] > 0
            if hang:
                state["hang_count"] -= 1
                state["in_flight"] += 1
            hang_ms = state["hang_ms"]
        if hang:
            time.sleep(hang_ms / 1000)
            with lock:
                state["in_flight"] -= 1
        with lock:
            status = state["fail_status"] or (200 if verified_with else 400)
            retry_after = state["retry_after"]
            record["answered"] = status
        reply = b"ok" if status < 300 else b"receiver is down: " + b"x" * 400
        try:
            self.send_response(status)
            if retry_after is not None and status >= 300:
                self.send_header("retry-after", str(retry_after))
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
