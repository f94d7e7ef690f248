"""Seeding a fresh local run: callables run once everything is up, before ``local.json`` is
written.

Each seed gets a :class:`SeedContext` (where the functions, storage and simulator are, and the
dev org's keys) and may call the app's HTTP API or write to storage. Seeds must be idempotent:
they run on every start, against storage kept from earlier runs. A seed that fails is logged
and the others still run.

:data:`DEFAULT_SEEDS` is the list ``make run`` uses; add a seed by appending to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("devhost")


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


def seed_dev_organization(context: SeedContext) -> None:
    """Connections and staff for the dev org (the simulator's mailboxes).

    Nothing to do yet: the admin API that registers connections and staff does not exist. When
    it does, this seed registers them (idempotent PUTs) when ``context.sim`` is set.
    """


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
