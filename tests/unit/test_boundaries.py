"""The layer rules, checked on the imports of every module (including imports inside functions,
which is where the adapters import their SDKs):

- the SDKs stay behind their adapters: exchangelib only under ``shared/exchange/ews``,
  msgraph-sdk and kiota only under ``shared/exchange/graph``, the Azure Storage SDKs only in
  ``shared/store/azure_tables.py`` and ``shared/queues/azure.py``, Key Vault only in
  ``shared/config.py``, azure-functions only in ``functions/`` and ``function_app.py``,
  OpenTelemetry and the Azure Monitor exporter only in ``shared/observability``;
- the engine is pure: the domain models, the port, the zone table and itself, nothing else;
- the HTTP layer knows no service; the booking and admin services do not know each other;
- production code (``shared/``, ``functions/``, ``function_app.py``) imports nothing from
  ``sim/``, ``devhost/``, ``bench/``, ``infra/`` or ``tests/``;
- the packages of ``shared`` import each other without a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("shared", "functions", "function_app.py")


@dataclass(frozen=True)
class Imported:
    module: str  # the importing module, dotted
    path: str  # its file, relative to the repository
    name: str  # what it imports, dotted (absolute)


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        path = REPO / root
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(*roots: str) -> list[Imported]:
    found: list[Imported] = []
    for path in python_files(*roots):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base]
            relative = str(path.relative_to(REPO))
            found.extend(Imported(module, relative, name) for name in names)
    return found


def within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def offenders(rule: str, allowed_in: tuple[str, ...], *libraries: str) -> list[str]:
    return [
        f"{found.path} imports {found.name} ({rule})"
        for found in imports(*PRODUCTION)
        if within(found.name, *libraries)
        and not any(
            found.path == place or found.path.startswith(place.rstrip("/") + "/")
            for place in allowed_in
        )
    ]


@pytest.mark.parametrize(
    ("rule", "allowed_in", "libraries"),
    [
        ("exchangelib behind the EWS adapter", ("shared/exchange/ews/",), ("exchangelib",)),
        (
            "msgraph-sdk behind the Graph adapter",
            ("shared/exchange/graph/",),
            (
                "msgraph",
                "msgraph_core",
                "kiota_abstractions",
                "kiota_http",
                "kiota_authentication_azure",
                "httpx",
            ),
        ),
        (
            "Azure Storage behind the store and the queues",
            ("shared/store/azure_tables.py", "shared/queues/azure.py"),
            ("azure.storage", "azure.data"),
        ),
        ("Key Vault behind the config", ("shared/config.py",), ("azure.keyvault",)),
        (
            "azure-identity for OAuth to Exchange and Key Vault",
            ("shared/exchange/oauth.py", "shared/exchange/graph/", "shared/config.py"),
            ("azure.identity",),
        ),
        (
            "azure-functions in the triggers",
            ("functions/", "function_app.py"),
            ("azure.functions",),
        ),
        (
            "telemetry behind shared/observability",
            ("shared/observability/",),
            ("opentelemetry", "azure.monitor"),
        ),
        ("no local stand-ins in production", (), ("sim", "devhost", "bench", "tests", "infra")),
    ],
)
def test_each_sdk_stays_behind_its_adapter(
    rule: str, allowed_in: tuple[str, ...], libraries: tuple[str, ...]
) -> None:
    assert offenders(rule, allowed_in, *libraries) == []


def test_the_engine_imports_only_the_models_the_port_and_itself() -> None:
    allowed = ("shared.engine", "shared.models", "shared.exchange.port", "shared.timezones")
    stray = [
        f"{found.path} imports {found.name}"
        for found in imports("shared/engine")
        if not within(found.name, *allowed)
        and found.name.split(".")[0] not in sys.stdlib_module_names
        and found.name != "__future__"
    ]
    assert stray == []


@pytest.mark.parametrize(
    ("root", "forbidden"),
    [
        ("shared/http", ("shared.booking", "shared.admin", "shared.apply", "shared.bootstrap")),
        ("shared/booking", ("shared.admin",)),
        ("shared/admin", ("shared.booking",)),
        ("shared/store", ("shared.exchange", "shared.apply", "shared.http", "shared.booking")),
        ("shared/exchange", ("shared.apply", "shared.http", "shared.booking", "shared.admin")),
    ],
)
def test_rooms_do_not_reach_into_rooms_above_them(root: str, forbidden: tuple[str, ...]) -> None:
    assert [
        f"{found.path} imports {found.name}"
        for found in imports(root)
        if within(found.name, *forbidden)
    ] == []


def test_the_packages_of_shared_import_each_other_without_a_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for found in imports("shared"):
        source = ".".join(found.module.split(".")[:2])
        if within(found.name, "shared") and found.name.count(".") >= 1:
            target = ".".join(found.name.split(".")[:2])
            if target != source:
                graph.setdefault(source, set()).add(target)

    def cycle_from(start: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for target in sorted(graph.get(start, ())):
            if target in path:
                return (*path[path.index(target) :], target)
            found = cycle_from(target, (*path, target))
            if found:
                return found
        return None

    cycles = {cycle for package in graph if (cycle := cycle_from(package, (package,)))}
    assert cycles == set()
