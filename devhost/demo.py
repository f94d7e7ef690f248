"""``python -m devhost.demo``: send one signed appointment to a running ``make run`` and print the
answer.

Reads ``.calbridge/local.json`` (or ``--local-json``), builds an example appointment snapshot
(tomorrow 10:00-10:45 in Europe/Berlin, version = the current unix time so each run is a newer
version), signs it as the booking platform does (``X-Calbridge-Signature: t=<unix>,v2=<hex
HMAC-SHA256 of "{t}.PUT.{path}.{body}">`` with the org's secret) and PUTs it to
``{functionsUrl}/orgs/{org}/appointments/{appointmentId}``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devhost.dev_secrets import signing_secret_variable
from devhost.runner import REPO_ROOT

SIGNATURE_HEADER = "X-Calbridge-Signature"
EXAMPLE_APPOINTMENT_ID = "demo-appointment-1"


def default_local_json() -> Path:
    data_dir = os.environ.get("CALBRIDGE_DEVHOST_DIR")
    return (Path(data_dir) if data_dir else REPO_ROOT / ".calbridge") / "local.json"


def sign(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    """The signature header value, as the booking platform computes it (v2: HMAC-SHA256 over
    ``"{t}.{METHOD}.{path and query}.{body}"``), written out here so the demo shows the recipe."""
    message = f"{timestamp}.{method.upper()}.{target}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v2={digest}"


def example_appointment(version: int, now: datetime | None = None) -> dict[str, Any]:
    zone = ZoneInfo("Europe/Berlin")
    today = (now or datetime.now(zone)).astimezone(zone)
    start = (today + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    return {
        "version": version,
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=45)).isoformat(),
        "timeZone": "Europe/Berlin",
        "title": "Initial consultation",
        "location": "Room 2",
        "serviceName": "Consultation",
        "organizerStaffId": "ann",
        "staff": [
            {"staffId": "ann", "role": "organizer"},
            {"staffId": "bob", "role": "secondary"},
        ],
        "clients": [{"name": "Sam Client", "email": "sam@example.com", "phone": "+49 30 1234"}],
        "notes": "First visit.",
    }


def send(local: dict[str, Any], appointment_id: str, document: dict[str, Any]) -> tuple[int, str]:
    body = json.dumps(document).encode()
    url = f"{local['functionsUrl']}/orgs/{local['org']}/appointments/{appointment_id}"
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL from local.json)
        url,
        data=body,
        method="PUT",
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(
                local["signingSecret"],
                "PUT",
                urllib.parse.urlsplit(url).path,
                body,
                int(time.time()),
            ),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def demo_staff(local: dict[str, Any], kind: str) -> list[str]:
    """Staff ids of the dev organization on one kind of connection (from local.json)."""
    return [m["staffId"] for m in local.get("staff", []) if m.get("kind") == kind]


def calendar_lines(local: dict[str, Any], title: str) -> list[str]:
    """How each staff member's calendar in the simulator shows the demo event."""
    control = local.get("sim", {}).get("control")
    if not control:
        return []
    lines = []
    for member in local.get("staff", []):
        url = f"{control.rstrip('/')}/mailboxes/{member['mailbox']}/items"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            items = json.loads(response.read())
        items = items.get("items", items) if isinstance(items, dict) else items
        for item in items:
            if item.get("subject") == title and not item.get("isCancelled"):
                organizer = (item.get("organizer") or {}).get("address", "?")
                role = "organizer" if organizer == member["mailbox"] else f"invited by {organizer}"
                lines.append(
                    f"  {member['mailbox']:<24} {member['kind']:<5} {item['start']}  {role}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.demo", description=__doc__)
    parser.add_argument("--local-json", type=Path, default=default_local_json())
    parser.add_argument("--appointment-id", default=EXAMPLE_APPOINTMENT_ID)
    parser.add_argument(
        "--wait", type=float, default=20.0, help="seconds to wait for the calendars (0: no wait)"
    )
    parser.add_argument(
        "--org",
        help="book for another local organization than dev (with --staff; its signing secret "
        "from --signing-secret or CALBRIDGE_SECRET_ORG_<ORG>_SIGNING_SECRET)",
    )
    parser.add_argument("--signing-secret", help="the organization's signing secret")
    parser.add_argument(
        "--staff", help="comma-separated staff ids, the organizer first (with --org)"
    )
    arguments = parser.parse_args(argv)
    if not arguments.local_json.is_file():
        print(f"{arguments.local_json} not found: start calbridge with `make run` first")
        return 2
    local = json.loads(arguments.local_json.read_text(encoding="utf-8"))
    plans: list[tuple[str, list[str]]]
    if arguments.org:
        secret = arguments.signing_secret or os.environ.get(signing_secret_variable(arguments.org))
        if not secret or not arguments.staff:
            print("--org needs --staff and a signing secret (--signing-secret or the variable)")
            return 2
        local = {
            **local,
            "org": arguments.org,
            "signingSecret": secret,
            "staff": [m for m in local.get("staff", []) if m["staffId"] in arguments.staff],
        }
        plans = [(arguments.org, arguments.staff.split(","))]
    else:
        # One multi-staff appointment per kind of connection when make run seeded staff on
        # both, otherwise the example's staff.
        plans = [
            (kind, staff) for kind in ("ews", "graph") if len(staff := demo_staff(local, kind)) >= 2
        ] or [("example", ["ann", "bob"])]
    version = int(time.time())
    failed = False
    titles = []
    for kind, staff in plans:
        appointment_id = f"{arguments.appointment_id}-{kind}"
        document = example_appointment(version=version)
        document["title"] = f"Initial consultation ({kind})"
        document["organizerStaffId"] = staff[0]
        document["staff"] = [{"staffId": staff[0], "role": "organizer"}] + [
            {"staffId": other, "role": "secondary"} for other in staff[1:3]
        ]
        print(f"PUT {local['functionsUrl']}/orgs/{local['org']}/appointments/{appointment_id}")
        try:
            status, answer = send(local, appointment_id, document)
        except urllib.error.URLError as error:
            print(f"cannot reach {local['functionsUrl']} ({error.reason}): is `make run` running?")
            return 1
        print(f"{status} {answer}")
        failed |= status >= 400
        titles.append((document["title"], len(document["staff"])))
    if failed or arguments.wait <= 0 or "sim" not in local:
        return 1 if failed else 0
    for title, expected in titles:
        deadline = time.monotonic() + arguments.wait
        lines = calendar_lines(local, title)
        while len(lines) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
            lines = calendar_lines(local, title)
        print(f"{title!r} in the simulator's calendars:")
        print("\n".join(lines) if lines else "  (not there yet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
