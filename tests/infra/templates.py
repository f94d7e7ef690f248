"""The Bicep templates as data, for the infra tests: parsed with pycep-parser (the same grammar
``make infra-check`` uses), with a small evaluator for the app settings' values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


@cache
def template(path: Path = MAIN) -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(text=path.read_text(encoding="utf-8")))


def main_variable(name: str) -> Any:
    return template()["variables"][name]["value"]


def parameter_defaults(path: Path = MAIN) -> dict[str, Any]:
    return {
        name: parameter["default"]
        for name, parameter in template(path)["parameters"].items()
        if "default" in parameter
    }


def decorator(path: Path, parameter: str, kind: str) -> Any:
    for found in template(path)["parameters"][parameter]["decorators"]:
        if found["type"] == kind:
            return found["argument"]
    raise KeyError(f"{parameter} has no {kind} decorator")


def dotted(expression: Any) -> str:
    """``a.b.c`` from pycep's nested property accessors."""
    if isinstance(expression, str):
        return expression
    operands = expression["operator"]["operands"]
    assert expression["operator"]["type"] == "property_accessor", expression
    return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"


def evaluate(value: Any, parameters: Mapping[str, Any], outputs: Mapping[str, str]) -> Any:
    """What a Bicep value becomes, for the few forms the app settings use: literals, parameter
    references, interpolated strings, ``string()``, ``cond ? a : b`` and module outputs (given
    as samples). pycep writes identifiers and string literals alike, so a plain string that
    names a parameter is that parameter."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if value in parameters:
            return parameters[value]
        return (
            _INTERPOLATION.sub(
                lambda match: str(evaluate(match.group(1), parameters, outputs)), value
            )
            if "${" in value
            else outputs.get(value, value)
        )
    if "function" in value:
        function = value["function"]
        assert function["type"] == "string", f"no evaluation for {function['type']}()"
        [argument] = function["parameters"].values()
        return str(evaluate(argument, parameters, outputs))
    operator = value["operator"]
    if operator["type"] == "conditional":
        operands = operator["operands"]
        chosen = evaluate(operands["condition"], parameters, outputs)
        return evaluate(operands["true_value" if chosen else "false_value"], parameters, outputs)
    if operator["type"] == "property_accessor":
        path = dotted(value)
        assert path in outputs, f"no sample value for {path}: add one to the test's outputs"
        return outputs[path]
    raise AssertionError(f"no evaluation for {operator['type']}")


def resources(path: Path) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(type, loop array or None, body)`` of every resource a template declares (not those it
    only refers to with ``existing``); the body of a loop or of a conditional resource is the
    per-item body, which pycep nests one level deeper."""
    found = []
    for resource in template(path)["resources"].values():
        if resource.get("existing"):
            continue
        config = resource["config"]
        if "loop_type" in config:
            array = config["loop_type"]["detail"]["array_name"]
            found.append((resource["type"], array, config["config"]))
        elif "condition" in config and "config" in config:
            found.append((resource["type"], None, config["config"]))
        else:
            found.append((resource["type"], None, config))
    return found


def module_path(name: str) -> Path:
    module = template()["modules"][name]
    assert module["type"] == "local", f"module {name} is not a local file"
    return INFRA / module["detail"]["path"]
