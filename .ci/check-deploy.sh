#!/usr/bin/env bash
# Renders every kustomization under deploy/ (the base and each overlay; components are
# rendered through the overlays that use them: example has servicemonitor and monitoring,
# example-store adds store) with kubectl's built-in kustomize and validates every object offline against the Kubernetes schemas.
# Usage: check-deploy.sh TOOLS_DIR
set -euo pipefail
TOOLS=$1
# The oldest Kubernetes the manifests support (preStop sleep, legacy token cleaner GA) and
# the version the crate is built against (k8s-openapi feature v1_33).
VERSIONS=1.30.0,1.33.0
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
rendered=()
for dir in deploy/base deploy/overlays/*/; do
    dir=${dir%/}
    file="$OUT/$(echo "$dir" | tr / _).yaml"
    kubectl kustomize "$dir" > "$file"
    rendered+=("$file")
done
"$TOOLS/venv/bin/python" .ci/validate-manifests.py "$VERSIONS" "${rendered[@]}"
