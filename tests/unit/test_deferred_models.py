"""calbridge's pydantic models build their validators on first use (``defer_build``), so that
importing the function app builds none. A model that cannot be built would then fail only in
the invocation that first uses it: every model is built here, and threads that use a model for
the first time at once (storage threads, ``asyncio.to_thread``) each get its own validator.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import shared

REPO = Path(__file__).resolve().parents[2]
# The adapters' packages import their SDKs and define no pydantic model.
ADAPTERS = ("shared.exchange.ews", "shared.exchange.graph")


def subclasses(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for sub in model.__subclasses__():
        yield sub
        yield from subclasses(sub)


def calbridge_models() -> list[type[BaseModel]]:
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        if not module.name.startswith(ADAPTERS):
            importlib.import_module(module.name)
    found = {m for m in subclasses(BaseModel) if m.__module__.startswith("shared.")}
    return sorted(found, key=lambda m: f"{m.__module__}.{m.__qualname__}")


MODELS = calbridge_models()


def test_the_models_are_found() -> None:
    names = {m.__name__ for m in MODELS}
    assert {"AppointmentSnapshot", "EventDraft", "ApiError", "AppointmentChanged"} <= names


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.__module__}.{m.__qualname__}")
def test_every_model_builds(model: type[BaseModel]) -> None:
    model.model_rebuild(raise_errors=True)
    assert model.__pydantic_complete__
    model.model_json_schema()  # its serializer and schema too


# A fresh process: the models are still unbuilt when the threads start.
FIRST_USE_IN_THREADS = """
import json, threading
import function_app
from shared.http.answers import ApiError
from shared.models import AppointmentSnapshot, OrgSettings
from tests.builders import snapshot_document

THREADS = 16
document = snapshot_document(1, title="Mortgage advice")
models = (AppointmentSnapshot, ApiError, OrgSettings)
assert not any(model.__pydantic_complete__ for model in models), "built before the threads"
start = threading.Barrier(THREADS)
outcomes = []

def first_use() -> None:
    start.wait()
    try:
        snapshot = AppointmentSnapshot.model_validate(document)
        error = ApiError(error="e", message="m").model_dump(by_alias=True)
        settings = OrgSettings.model_validate({"pollIntervalSeconds": 120})
        outcomes.append([snapshot.title, error["message"], settings.poll_interval_seconds])
    except Exception as exc:
        outcomes.append(repr(exc))

threads = [threading.Thread(target=first_use) for _ in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes))
"""


def test_threads_using_a_model_first_at_once_all_validate_with_it() -> None:
    # Not true of every pydantic 2.x (pydantic/pydantic#11849: a thread could validate with the
    # parent's validator meanwhile, and CamelModel's refuses every field); 2.14 serialises the
    # first build. Checked again whenever the pin moves.
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE_IN_THREADS],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    assert json.loads(done.stdout) == [["Mortgage advice", "m", 120]] * 16
