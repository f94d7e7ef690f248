"""Seeding a fresh local run: callables run once everything is up, before ``local.json`` is
written.

Each seed gets a :class:`SeedContext` (where the functions, storage and simulator are, and the
dev org's keys) and may call the app's HTTP API or write to storage. Seeds must be idempotent:
they run on every start, against storage kept from earlier runs. A seed that fails is logged
and the others still run.

:data:`DEFAULT_SEEDS` is the list ``make run`` uses; add a seed by appending to it.

The development organization (``dev``) gets its webhooks sent to the simulator's booking
platform stand-in, and two connections to the simulator, as an administrator would set them up
through the admin API: ``onprem`` (EWS, NTLM, a service account
with impersonation) for the first three mailboxes of the simulator's demo organization, and
``cloud`` (Graph, app-only OAuth) for the others. The secrets they name are put in the app's
environment (:func:`simulator_environment`) before the app starts, as Key Vault would hold them,
with those of the simulator's EWS application (a client secret, and a certificate with its key),
so an administrator can switch ``onprem`` to OAuth.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.app_certificate import app_certificate_path
from shared.admin import ADMIN_KEY_HEADER
from shared.config import connection_secret_name, environment_variable_for
from sim.config import DEMO_EWS_CLIENT

log = logging.getLogger("devhost")

EWS_CONNECTION = "onprem"
GRAPH_CONNECTION = "cloud"
EWS_SECRET_REFERENCE = "dev-ews-password"  # noqa: S105 - a Key Vault name, not a secret
GRAPH_SECRET_REFERENCE = "dev-graph-secret"  # noqa: S105 - a Key Vault name
EWS_STAFF_COUNT = 3  # the first mailboxes go to the EWS connection, the rest to Graph
# The EWS application's credentials, for switching ``onprem`` to OAuth (README, "Switching a
# connection to OAuth").
EWS_APP_SECRET_REFERENCE = "dev-ews-app-secret"  # noqa: S105 - a Key Vault name
EWS_APP_CERTIFICATE_REFERENCE = "dev-ews-app-certificate"


@dataclass(frozen=True)
class SeedContext:
    """What a seed may use. ``sim`` holds the simulator's URLs and ``config`` (None when off)."""

    org: str
    functions_url: str
    functions_key: str
    admin_key: str
    signing_secret: str
    storage_connection_string: str
    sim: Mapping[str, Any] | None
    environ: Mapping[str, str] = field(repr=False, default_factory=dict)


Seed = Callable[[SeedContext], None]


@dataclass(frozen=True)
class DevStaff:
    staff_id: str
    mailbox: str
    time_zone: str
    connection_id: str
    kind: str

    def as_json(self) -> dict[str, str]:
        return {
            "staffId": self.staff_id,
            "mailbox": self.mailbox,
            "timeZone": self.time_zone,
            "connectionId": self.connection_id,
            "kind": self.kind,
        }


def _sim_config(sim: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(Path(str(sim["config"])).read_text())
    return config


def dev_staff(sim: Mapping[str, Any] | None) -> list[DevStaff]:
    """The dev organization's staff: one per simulator mailbox, EWS first, then Graph."""
    if sim is None or "config" not in sim:
        return []
    staff = []
    for index, mailbox in enumerate(_sim_config(sim)["mailboxes"]):
        address = str(mailbox["address"]).lower()
        on_ews = index < EWS_STAFF_COUNT
        staff.append(
            DevStaff(
                staff_id=address.split("@", 1)[0],
                mailbox=address,
                time_zone=str(mailbox.get("timeZone", "UTC")),
                connection_id=EWS_CONNECTION if on_ews else GRAPH_CONNECTION,
                kind="ews" if on_ews else "graph",
            )
        )
    return staff


def simulator_environment(sim: Mapping[str, Any], org: str) -> dict[str, str]:
    """App settings that point calbridge at the simulator: Graph endpoints, the connection
    secrets (what Key Vault holds in Azure), and loopback Exchange URLs allowed (the simulator's
    EWS endpoint is plain http on this machine; never set in Azure)."""
    config = _sim_config(sim)
    environment = {
        "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE": "true",
    }
    environment |= {
        name: str(sim[key])
        for name, key in (
            ("CALBRIDGE_GRAPH_URL", "graph"),
            ("CALBRIDGE_GRAPH_AUTHORITY", "token"),
            ("CALBRIDGE_GRAPH_CA_BUNDLE", "caBundle"),
        )
        if key in sim
    }
    for service in config.get("serviceAccounts", [])[:1]:
        environment[environment_variable_for(connection_secret_name(org, EWS_SECRET_REFERENCE))] = (
            str(service["password"])
        )
    for client in config.get("oauthClients", [])[:1]:
        environment[
            environment_variable_for(connection_secret_name(org, GRAPH_SECRET_REFERENCE))
        ] = str(client["clientSecret"])
    # The EWS application (for switching ``onprem`` to OAuth): its client secret and, when
    # ``make run`` made one, its certificate with the key.
    for client in config.get("oauthClients", []):
        if client.get("clientId") != DEMO_EWS_CLIENT:
            continue
        if client.get("clientSecret"):
            environment[
                environment_variable_for(connection_secret_name(org, EWS_APP_SECRET_REFERENCE))
            ] = str(client["clientSecret"])
        certificate = app_certificate_path(Path(str(sim["config"])))
        if client.get("certificates") and certificate.is_file():
            environment[
                environment_variable_for(connection_secret_name(org, EWS_APP_CERTIFICATE_REFERENCE))
            ] = certificate.read_text(encoding="utf-8")
    return environment


def _admin_put(context: SeedContext, path: str, body: Mapping[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local runner's own loopback URL
        f"{context.functions_url}/orgs/{context.org}/{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={
            "Content-Type": "application/json",
            ADMIN_KEY_HEADER: context.admin_key,
            "x-functions-key": context.functions_key,
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        if response.status not in (200, 201):
            raise RuntimeError(f"PUT {path} answered {response.status}")


def seed_dev_organization(context: SeedContext) -> None:
    """Connections and staff for the dev org, against the simulator (idempotent PUTs)."""
    if context.sim is None:
        log.info("no simulator: the dev organization gets no connections")
        return
    config = _sim_config(context.sim)
    if not (config.get("serviceAccounts") and config.get("oauthClients")):
        log.info("the simulator has no service account or OAuth client: no connections seeded")
        return
    service = config["serviceAccounts"][0]
    client = config["oauthClients"][0]
    if "booking" in context.sim:
        # The booking platform stand-in takes the dev organization's webhooks.
        _admin_put(context, "settings", {"webhookUrl": f"{context.sim['booking']}/webhooks"})
    _admin_put(
        context,
        f"connections/{EWS_CONNECTION}",
        {
            "kind": "ews",
            "ewsUrl": context.sim["ews"],
            "authType": "ntlm",
            "username": service["username"],
            "secretReference": EWS_SECRET_REFERENCE,
            "accessMode": "impersonation",
        },
    )
    _admin_put(
        context,
        f"connections/{GRAPH_CONNECTION}",
        {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": client["tenantId"],
            "clientId": client["clientId"],
            "secretReference": GRAPH_SECRET_REFERENCE,
        },
    )
    for member in dev_staff(context.sim):
        _admin_put(
            context,
            f"staff/{member.staff_id}",
            {
                "connectionId": member.connection_id,
                "mailbox": member.mailbox,
                "timeZone": member.time_zone,
            },
        )


DEFAULT_SEEDS: list[Seed] = [seed_dev_organization]


def run_seeds(context: SeedContext, seeds: Sequence[Seed]) -> list[str]:
    """Run every seed in order; the names of those that failed."""
    failed = []
    for seed in seeds:
        name = getattr(seed, "__name__", repr(seed))
        try:
            seed(context)
        except Exception:
            log.exception("seed %s failed", name)
            failed.append(name)
        else:
            log.info("seed %s done", name)
    return failed
