"""A subscriber endpoint for Graph change notifications, for tests and demos.

``NotificationReceiver`` listens on a free loopback port and behaves like a well-made
subscriber: it answers the validation handshake (echoes ``validationToken`` as text/plain),
records every notification POST, and can be told to fail the next N deliveries (to see Graph
retry) or to refuse validation. Notification and lifecycle URLs are ``.url`` and
``.lifecycle_url`` (same server, lifecycle POSTs recorded separately).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Delivery:
    """One POST that reached the receiver."""

    path: str
    status: int  # what the receiver answered
    notifications: list[dict[str, Any]]


class NotificationReceiver:
    """A local HTTP subscriber; use as a context manager or call ``close()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Condition()
        self.deliveries: list[Delivery] = []
        self.validations: list[str] = []
        self.fail_next = 0  # answer this many notification POSTs with ``fail_status``
        self.fail_status = 503
        self.refuse_validation = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._on_post(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        port = self._server.server_address[1]
        self.url = f"http://{host}:{port}/notifications"
        self.lifecycle_url = f"http://{host}:{port}/lifecycle"

    def __enter__(self) -> NotificationReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what tests read ----------------------------------------------------------------------

    def notifications(self, path: str = "/notifications") -> list[dict[str, Any]]:
        """Every notification received at a path (successful deliveries only)."""
        with self._lock:
            return [
                n
                for d in self.deliveries
                if d.path == path and 200 <= d.status < 300
                for n in d.notifications
            ]

    def lifecycle_notifications(self) -> list[dict[str, Any]]:
        return self.notifications("/lifecycle")

    def wait_for(
        self, count: int, *, path: str = "/notifications", timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` notifications have arrived at ``path``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.notifications(path)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return self.notifications(path)

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.validations.clear()
            self.fail_next = 0
            self.refuse_validation = False

    # --- serving --------------------------------------------------------------------------------

    def _on_post(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        token = parse_qs(parts.query).get("validationToken")
        if token:
            with self._lock:
                self.validations.append(token[0])
                refuse = self.refuse_validation
            if refuse:
                self._answer(handler, 403, b"no", "text/plain")
            else:
                self._answer(handler, 200, token[0].encode(), "text/plain; charset=utf-8")
            return
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        notifications = payload.get("value", []) if isinstance(payload, dict) else []
        with self._lock:
            if self.fail_next > 0 and parts.path == "/notifications":
                self.fail_next -= 1
                status = self.fail_status
            else:
                status = 202
            self.deliveries.append(Delivery(parts.path, status, notifications))
            self._lock.notify_all()
        self._answer(handler, status, b"", "text/plain")

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
