"""Deployment tooling, never deployed itself (.funcignore leaves ``infra/`` out of the package):
``check`` parses the Bicep templates and runs checkov on them (``make infra-check``),
``package`` builds the app's zip the way .funcignore says (``infra/deploy.sh``)."""
