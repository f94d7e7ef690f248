"""Indexing a ``func.FunctionApp`` the way the Functions host does: which functions exist, what
triggers them, and the bindings each declares (from ``get_function_json()``).

``app.get_functions()`` may run only once per app object (a second call raises on "duplicate"
names), so :func:`indexed_functions` caches its result per app object; everything in devhost
indexes through it. ``%NAME%`` expressions in binding values are app-setting references, resolved
from the environment the way the host resolves them (:func:`resolve_setting_expressions`). An
HTTP function whose route template the runner cannot read (:mod:`devhost.routes`) is refused
here with a RouteTemplateError naming the function and the route.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from devhost.routes import RouteTemplate, RouteTemplateError

log = logging.getLogger("devhost")

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
HTTP_OUTPUT = "http"
QUEUE_OUTPUT = "queue"

_SUPPORTED_TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER)
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")

_cache: weakref.WeakKeyDictionary[func.FunctionApp, list[func.Function]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()


def indexed_functions(app: func.FunctionApp) -> list[func.Function]:
    """``app.get_functions()``, called at most once per app object."""
    with _cache_lock:
        if app not in _cache:
            _cache[app] = list(app.get_functions())
        return _cache[app]


class SettingNotFound(LookupError):
    """A ``%NAME%`` binding expression naming an app setting the environment lacks."""


def resolve_setting_expressions(value: str, environ: Mapping[str, str]) -> str:
    """``"%PREFIX%work"`` with ``PREFIX=t1`` → ``"t1work"``; a missing or empty setting raises."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        # Like the host, an empty value is as good as none ("does not resolve to a value").
        if not environ.get(name):
            raise SettingNotFound(f"app setting {name!r} (used as %{name}%) is not set or empty")
        return environ[name]

    return _SETTING_EXPRESSION.sub(setting, value)


@dataclass(frozen=True)
class RegisteredFunction:
    """One function as the host indexes it: its trigger binding, other bindings, user code."""

    name: str
    trigger: dict[str, Any]
    other_bindings: list[dict[str, Any]]
    user_function: Any

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def route(self) -> str:
        """An HTTP function's route template; without one it is served under its own name."""
        return str(self.trigger.get("route") or self.name)

    @property
    def queue_outputs(self) -> list[dict[str, Any]]:
        return [b for b in self.other_bindings if b.get("type") == QUEUE_OUTPUT]


@dataclass
class FunctionIndex:
    """The app's functions grouped by trigger; ``skipped`` names what the runner cannot drive."""

    http: list[RegisteredFunction] = field(default_factory=list)
    queue: list[RegisteredFunction] = field(default_factory=list)
    timer: list[RegisteredFunction] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # function name → why

    @property
    def all(self) -> list[RegisteredFunction]:
        return [*self.http, *self.queue, *self.timer]


def index_app(app: func.FunctionApp) -> FunctionIndex:
    """Group the app's functions by trigger type, skipping (and naming) unsupported ones."""
    index = FunctionIndex()
    for function in indexed_functions(app):
        name = str(function.get_function_name())
        bindings: list[dict[str, Any]] = json.loads(function.get_function_json())["bindings"]
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            index.skipped[name] = f"expected one trigger binding, found {len(triggers)}"
            continue
        trigger = triggers[0]
        others = [b for b in bindings if b is not trigger]
        unsupported = [
            str(b.get("type"))
            for b in others
            if b.get("type") not in (HTTP_OUTPUT, QUEUE_OUTPUT)
            or str(b.get("direction", "")).upper() != "OUT"
        ]
        if trigger["type"] not in _SUPPORTED_TRIGGERS:
            index.skipped[name] = f"trigger {trigger['type']!r} is not supported locally"
            continue
        if unsupported:
            index.skipped[name] = f"bindings {unsupported} are not supported locally"
            continue
        registered = RegisteredFunction(name, trigger, others, function.get_user_function())
        if trigger["type"] == HTTP_TRIGGER:
            # Refused, not skipped: a route served differently (or not at all) would only show
            # as a surprising 404 later, far from its cause.
            try:
                RouteTemplate.parse(registered.route)
            except RouteTemplateError as error:
                raise RouteTemplateError(f"function {name}: {error}") from error
        {HTTP_TRIGGER: index.http, QUEUE_TRIGGER: index.queue, TIMER_TRIGGER: index.timer}[
            trigger["type"]
        ].append(registered)
    for name, reason in index.skipped.items():
        log.warning("function %s is not run locally: %s", name, reason)
    return index
