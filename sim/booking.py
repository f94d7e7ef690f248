"""The booking platform stand-in: receives calbridge's signed webhooks on its own port, checks
their signatures, records them, and answers with scripted statuses when told to.

Signature (see the booking API spec): header ``X-Calbridge-Signature: t=<unix>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256 over ``"{t}.{raw body}"`` with the organization's secret; the org is the
JSON body's ``org`` field (or the ``/webhooks/<org>`` path segment when the body has none).

HTTP: ``POST /webhooks`` (and ``/webhooks/<org>``) → 200 ``{"received": true}``, 401 for a bad or
missing signature (recorded as unverified), 400 for a body that is not JSON, or the scripted
status; ``GET /received`` → the recorded list; ``DELETE /received`` clears it;
``POST /respond`` ``{"type", "status", "times"?}`` scripts answers for an event type ("*" for
any; no ``times``: until cleared); ``DELETE /respond`` clears scripts.
Python: ``BookingPlatform.received``, ``.respond_with(...)``, ``.clear()``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sim.wire import SimRequest, SimResponse

SIGNATURE_HEADER = "x-calbridge-signature"
# Signed timestamps older (or newer) than this are refused, as the real platform would.
SIGNATURE_TOLERANCE_S = 300


@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON (None if it was not JSON)
    raw: str
    verified: bool
    status: int  # what the stand-in answered
    reason: str = ""
    received_at: float = field(default_factory=time.time)

    @property
    def event_type(self) -> str | None:
        return self.body.get("type") if isinstance(self.body, dict) else None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "verified": self.verified,
            "status": self.status,
            "reason": self.reason,
            "receivedAt": self.received_at,
        }


@dataclass
class ScriptedAnswer:
    event_type: str
    status: int
    remaining: int | None  # None: until cleared


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for a body (what calbridge must send)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify_signature(
    header: str | None, body: bytes, secret: str, *, now: float | None = None
) -> str | None:
    """None when the header signs ``body`` with ``secret`` in time; else why not."""
    if not header:
        return "missing signature header"
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, separator, value = part.strip().partition("=")
        if separator:
            fields.setdefault(key, []).append(value)
    stamps, signatures = fields.get("t", []), fields.get("v1", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return "malformed signature header"
    current = time.time() if now is None else now
    if abs(current - int(stamps[0])) > SIGNATURE_TOLERANCE_S:
        return "signature timestamp outside tolerance"
    expected = hmac.new(
        secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        return "signature mismatch"
    return None


class BookingPlatform:
    """The stand-in's state and HTTP behaviour (served by the simulator on its own port)."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        self._lock = threading.Lock()
        self._received: list[ReceivedWebhook] = []
        self._scripts: list[ScriptedAnswer] = []
        self._arrived = threading.Condition(self._lock)

    # --- Python API -----------------------------------------------------------------------
    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def respond_with(self, event_type: str, status: int, times: int | None = None) -> None:
        """Answer webhooks of ``event_type`` ("*": any) with ``status`` the next ``times``
        times (None: until ``clear_responses``)."""
        if not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._scripts.append(ScriptedAnswer(event_type, status, times))

    def clear_responses(self) -> None:
        with self._lock:
            self._scripts.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedWebhook]:
        """Block until at least ``count`` webhooks have arrived (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            return list(self._received)

    # --- HTTP -----------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        path = request.path.rstrip("/") or "/"
        if path == "/received":
            if request.method == "GET":
                return _json(200, [w.as_json() for w in self.received])
            if request.method == "DELETE":
                self.clear()
                return SimResponse(204)
        elif path == "/respond":
            if request.method == "POST":
                return self._script(request)
            if request.method == "DELETE":
                self.clear_responses()
                return SimResponse(204)
        elif path == "/webhooks" or path.startswith("/webhooks/"):
            if request.method == "POST":
                return self._receive(request, path)
        elif path == "/health" and request.method == "GET":
            return _json(200, {"ok": True})
        else:
            return _json(404, {"error": f"no such endpoint {request.method} {request.path}"})
        return _json(405, {"error": f"{request.method} is not allowed on {path}"})

    def _script(self, request: SimRequest) -> SimResponse:
        try:
            spec = json.loads(request.body)
            self.respond_with(str(spec["type"]), int(spec["status"]), spec.get("times"))
        except (ValueError, KeyError, TypeError) as error:
            return _json(400, {"error": f"expected {{type, status, times?}}: {error}"})
        return _json(200, {"scripted": spec})

    def _receive(self, request: SimRequest, path: str) -> SimResponse:
        raw_text = request.body.decode("utf-8", "replace")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        org = body.get("org") if isinstance(body, dict) else None
        if not org and path.startswith("/webhooks/"):
            org = path.split("/", 2)[2]
        secret = self.secrets.get(str(org)) if org else None
        if secret is None:
            reason: str | None = f"unknown organization {org!r}" if org else "no organization"
        else:
            reason = verify_signature(request.header(SIGNATURE_HEADER), request.body, secret)
        verified = reason is None
        answer: dict[str, Any]
        if body is None:
            status, answer = 400, {"error": "body is not JSON"}
        elif not verified:
            status, answer = 401, {"error": reason}
        else:
            status = self._scripted_status(body.get("type") if isinstance(body, dict) else None)
            answer = {"received": True} if status < 300 else {"error": "scripted refusal"}
        webhook = ReceivedWebhook(
            path=path,
            headers=dict(request.headers),
            body=body,
            raw=raw_text,
            verified=verified,
            status=status,
            reason=reason or "",
        )
        with self._arrived:
            self._received.append(webhook)
            self._arrived.notify_all()
        return _json(status, answer)

    def _scripted_status(self, event_type: str | None) -> int:
        with self._lock:
            for script in self._scripts:
                if script.event_type in ("*", event_type):
                    if script.remaining is not None:
                        script.remaining -= 1
                        if script.remaining <= 0:
                            self._scripts.remove(script)
                    return script.status
        return 200


def _json(status: int, payload: Any) -> SimResponse:
    return SimResponse(status, json.dumps(payload).encode())
