#!/usr/bin/env bash
# Deploy calbridge to Azure with the az CLI: the resource group, the Bicep templates
# (infra/main.bicep), then the app package. The same result as `azd up` (azure.yaml), without azd.
#
#   infra/deploy.sh ENVIRONMENT [--location REGION] [--resource-group NAME] [--code-only]
#                   [NAME=VALUE ...]
#
# ENVIRONMENT names the deployment (letters, digits, hyphens): it tags every resource and seeds
# the unique part of their names, so one environment always lands on the same resources.
# NAME=VALUE pairs are passed to main.bicep as parameters (e.g. storageSkuName=Standard_GZRS).
# --code-only skips the resource group and the templates and deploys the package again.
#
# Needs: az (signed in: `az login`; `az account set -s ...` picks the subscription), python3 and
# git (the package is built by infra/package.py from what .funcignore leaves in). The signed-in
# user or service principal becomes the operator: it may write organization secrets in the Key
# Vault, read the state tables and replay poison queues.
#
# The package holds no dependencies. `az functionapp deployment source config-zip --build-remote
# true` on a Flex Consumption app uploads it to the platform's one-deploy endpoint
# (/api/publish?RemoteBuild=true), which installs requirements.txt on Linux for the app's Python
# (3.11) and then stores the built package in the app's deployment container.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

root="$(cd "$(dirname "$0")/.." && pwd)"
environment=""
location="${AZURE_LOCATION:-}"
resource_group="${AZURE_RESOURCE_GROUP:-}"
code_only=false
parameters=()
while [ $# -gt 0 ]; do
  case "$1" in
    --location) location="${2:?--location needs a region}"; shift 2 ;;
    --resource-group) resource_group="${2:?--resource-group needs a name}"; shift 2 ;;
    --code-only) code_only=true; shift ;;
    -h|--help) usage ;;
    *=*) parameters+=("$1"); shift ;;
    -*) echo "deploy: unknown option $1" >&2; usage ;;
    *)
      [ -z "$environment" ] || { echo "deploy: one environment name only" >&2; usage; }
      environment="$1"; shift ;;
  esac
done
[ -n "$environment" ] || usage
if ! [[ "$environment" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,63}$ ]]; then
  echo "deploy: the environment name is letters, digits and hyphens (at most 64)" >&2
  exit 2
fi
resource_group="${resource_group:-rg-calbridge-$environment}"

az account show --query id --output tsv >/dev/null || {
  echo "deploy: sign in first: az login" >&2
  exit 1
}

deployment="calbridge-$environment"
if [ "$code_only" = false ]; then
  [ -n "$location" ] || { echo "deploy: --location REGION (one with Flex Consumption)" >&2; exit 2; }

  # The operator: the signed-in user, or the service principal a pipeline signs in as.
  if [ "$(az account show --query user.type --output tsv)" = "user" ]; then
    operator_id="$(az ad signed-in-user show --query id --output tsv)"
    operator_type=User
  else
    operator_id="$(az ad sp show --id "$(az account show --query user.name --output tsv)" \
      --query id --output tsv)"
    operator_type=ServicePrincipal
  fi

  echo "deploy: resource group $resource_group in $location"
  az group create --name "$resource_group" --location "$location" \
    --tags "azd-env-name=$environment" application=calbridge --output none

  echo "deploy: templates (infra/main.bicep) as deployment $deployment"
  az deployment group create --resource-group "$resource_group" --name "$deployment" \
    --template-file "$root/infra/main.bicep" \
    --parameters environmentName="$environment" location="$location" \
    operatorPrincipalId="$operator_id" operatorPrincipalType="$operator_type" \
    ${parameters[@]+"${parameters[@]}"} \
    --output none
fi

output() {
  az deployment group show --resource-group "$resource_group" --name "$deployment" \
    --query "properties.outputs.$1.value" --output tsv
}
app="$(output AZURE_FUNCTION_APP_NAME)"
[ -n "$app" ] || { echo "deploy: deployment $deployment names no function app" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/calbridge-deploy.XXXXXX")"
trap 'rm -rf "$work"' EXIT
package="$work/calbridge.zip"
(cd "$root" && python3 -m infra.package --output "$package" >/dev/null)
echo "deploy: package $(python3 -c 'import sys, zipfile; print(len(zipfile.ZipFile(sys.argv[1]).namelist()))' "$package") files -> $app (remote build)"

# On a first deployment the identity's new role on the deployment container can take minutes
# to reach the storage service (the upload then fails with 403): try again a few times.
for attempt in 1 2 3 4; do
  if az functionapp deployment source config-zip --resource-group "$resource_group" \
    --name "$app" --src "$package" --build-remote true --timeout 900 --output none; then
    break
  fi
  if [ "$attempt" -eq 4 ]; then
    echo "deploy: the package was not accepted; see the deployment log of $app" >&2
    exit 1
  fi
  echo "deploy: not accepted yet (attempt $attempt), trying again in 60 s" >&2
  sleep "${CALBRIDGE_DEPLOY_RETRY_SECONDS:-60}"
done

cat <<EOF
deploy: done
  functions     $(output FUNCTIONS_API_URL)
  key vault     $(output KEY_VAULT_NAME)   (organization secrets: docs/operations.md)
  storage       $(output STORAGE_ACCOUNT_NAME)   queues $(output CALBRIDGE_QUEUE_PREFIX)<name>
  graph (planned) $(output GRAPH_NOTIFICATION_URL)
EOF
