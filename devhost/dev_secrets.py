"""The dev organization's secrets for local runs: generated once, kept in
``.calbridge/secrets.json`` (git-ignored, owner-only) so restarts keep them.

An environment variable wins over the stored value: ``CALBRIDGE_SECRET_ORG_DEV_SIGNING_SECRET``
(the same variable the app's secret resolver reads), ``CALBRIDGE_ADMIN_KEY`` and
``CALBRIDGE_FUNCTIONS_KEY``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.config import environment_variable_for, org_signing_secret_reference

DEV_ORG = "dev"
ADMIN_KEY_VARIABLE = "CALBRIDGE_ADMIN_KEY"
FUNCTIONS_KEY_VARIABLE = "CALBRIDGE_FUNCTIONS_KEY"


def signing_secret_variable(org: str = DEV_ORG) -> str:
    """``CALBRIDGE_SECRET_ORG_DEV_SIGNING_SECRET`` for the dev org."""
    return environment_variable_for(org_signing_secret_reference(org))


@dataclass(frozen=True)
class DevSecrets:
    signing_secret: str
    admin_key: str
    functions_key: str


def write_private_json(path: Path, document: object) -> None:
    """Write JSON readable by the owner only, atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def load_or_create(path: Path, environ: Mapping[str, str]) -> DevSecrets:
    """The stored secrets (created on first use), each overridable from the environment."""
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    generated = {
        "signing_secret": stored.get("signing_secret") or secrets.token_urlsafe(32),
        "admin_key": stored.get("admin_key") or secrets.token_urlsafe(32),
        "functions_key": stored.get("functions_key") or secrets.token_urlsafe(40),
    }
    if generated != stored:
        write_private_json(path, generated)
    kept = DevSecrets(**generated)
    return DevSecrets(
        signing_secret=environ.get(signing_secret_variable()) or kept.signing_secret,
        admin_key=environ.get(ADMIN_KEY_VARIABLE) or kept.admin_key,
        functions_key=environ.get(FUNCTIONS_KEY_VARIABLE) or kept.functions_key,
    )
