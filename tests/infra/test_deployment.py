"""How calbridge is deployed: ``infra/deploy.sh`` (run here against a stand-in ``az`` that
records each call and answers like the real one), ``azure.yaml`` for ``azd up`` and the
parameters file azd fills in."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.package import package_files
from tests.infra.templates import INFRA, REPO, module_path, resources, template

DEPLOY = INFRA / "deploy.sh"

# A stand-in for the az CLI: logs its arguments (one JSON list per line), answers the queries
# deploy.sh makes, and lists the zip it is asked to deploy.
FAKE_AZ = """\
#!{python}
import json, os, sys, zipfile
args = sys.argv[1:]
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
def option(name):
    return args[args.index(name) + 1] if name in args else None
query = option("--query") or ""
if args[:2] == ["account", "show"]:
    print({{"id": "00000000-sub", "user.type": "user"}}[query])
elif args[:3] == ["ad", "signed-in-user", "show"]:
    print("operator-object-id")
elif args[:3] == ["deployment", "group", "show"]:
    name = query.split(".")[2]
    print({{"AZURE_FUNCTION_APP_NAME": "func-calbridge-abc"}}.get(name, "value-of-" + name))
elif args[:4] == ["functionapp", "deployment", "source", "config-zip"]:
    with zipfile.ZipFile(option("--src")) as archive, open(os.environ["AZ_ZIP"], "w") as out:
        json.dump(sorted(archive.namelist()), out)
"""


def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    python3 = bin_dir / "python3"  # deploy.sh's python3 is this interpreter, whatever the PATH
    python3.symlink_to(sys.executable)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AZ_LOG": str(tmp_path / "az.log"),
        "AZ_ZIP": str(tmp_path / "zip.json"),
        "TMPDIR": str(tmp_path),
    }


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "az.log").read_text().splitlines()]


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_deploy_creates_the_group_deploys_the_templates_then_the_package(tmp_path: Path) -> None:
    env = fake_az(tmp_path)
    done = subprocess.run(
        [
            "bash",
            str(DEPLOY),
            "prod",
            "--location",
            "swedencentral",
            "storageSkuName=Standard_GZRS",
        ],
        cwd=tmp_path,  # from anywhere: the script finds the repository itself
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    made = calls(tmp_path)
    [group] = [c for c in made if c[:2] == ["group", "create"]]
    assert option(group, "--name") == "rg-calbridge-prod"
    assert option(group, "--location") == "swedencentral"
    [deployment] = [c for c in made if c[:3] == ["deployment", "group", "create"]]
    assert option(deployment, "--resource-group") == "rg-calbridge-prod"
    assert Path(option(deployment, "--template-file")) == INFRA / "main.bicep"
    parameters = deployment[deployment.index("--parameters") + 1 : deployment.index("--output")]
    assert parameters == [
        "environmentName=prod",
        "location=swedencentral",
        "operatorPrincipalId=operator-object-id",
        "operatorPrincipalType=User",
        "storageSkuName=Standard_GZRS",
    ]
    [upload] = [c for c in made if c[:4] == ["functionapp", "deployment", "source", "config-zip"]]
    assert option(upload, "--name") == "func-calbridge-abc"
    assert option(upload, "--build-remote") == "true"
    assert made.index(group) < made.index(deployment) < made.index(upload)
    assert json.loads((tmp_path / "zip.json").read_text()) == package_files()
    assert "value-of-FUNCTIONS_API_URL" in done.stdout
    assert not list(tmp_path.glob("calbridge-deploy.*"))  # the package's folder is removed


def test_code_only_redeploys_the_package_and_touches_no_infrastructure(tmp_path: Path) -> None:
    env = fake_az(tmp_path)
    done = subprocess.run(
        ["bash", str(DEPLOY), "prod", "--code-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    made = calls(tmp_path)
    assert not [c for c in made if c[:2] == ["group", "create"] or "create" in c[:3]]
    assert [c[:4] for c in made if c[0] == "functionapp"] == [
        ["functionapp", "deployment", "source", "config-zip"]
    ]


@pytest.mark.parametrize(
    "args",
    [[], ["bad name!", "--location", "x"], ["prod"], ["prod", "--location", "x", "--what"]],
)
def test_deploy_refuses_what_it_cannot_do_before_calling_azure(
    tmp_path: Path, args: list[str]
) -> None:
    env = fake_az(tmp_path)
    done = subprocess.run(
        ["bash", str(DEPLOY), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    logged = calls(tmp_path) if (tmp_path / "az.log").exists() else []
    assert [c for c in logged if c[0] != "account"] == []


def test_azd_provisions_main_bicep_and_deploys_the_function_app_it_tags() -> None:
    project = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    [(service, config)] = project["services"].items()
    assert config["host"] == "function"
    assert config["language"] == "python"
    assert config["project"] == "."
    assert config["remoteBuild"] is True
    [app] = [
        body
        for kind, _, body in resources(module_path("functionApp"))
        if kind == "Microsoft.Web/sites"
    ]
    # tags: union(tags, {'azd-service-name': '<service>'}), how azd finds the app to deploy to
    union = app["tags"]["function"]
    assert union["type"] == "union"
    assert union["parameters"]["arg_2"] == {"'azd-service-name'": service}


def test_the_parameters_file_fills_what_main_bicep_needs_and_nothing_else() -> None:
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = template()["parameters"]
    assert set(given) <= set(declared)
    required = {name for name, p in declared.items() if "default" not in p}
    assert required <= set(given)
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"


def test_the_deploy_script_is_strict_bash() -> None:
    text = DEPLOY.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(DEPLOY, os.X_OK)
    subprocess.run(["bash", "-n", str(DEPLOY)], check=True)
