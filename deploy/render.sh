#!/usr/bin/env bash
# Render the plain manifests in deploy/manifests/ from the Helm chart.
#
#   deploy/render.sh [HELM]     (default: helm from k8s/e2e/build.sh's cache, else on PATH)
#
# tests/e2e/test_manifests.py renders with the same commands and fails when
# the committed files differ: re-run this after changing the chart.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(awk -F= '/^HELM_VERSION=/{print $2}' "$here/../k8s/e2e/build.sh")"
cached="${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}/helm-$version/helm"
helm="${1:-${EDGEPLACE_HELM:-$( [[ -x "$cached" ]] && echo "$cached" || command -v helm )}}"
chart="$here/helm/edgeplace"
out="${EDGEPLACE_RENDER_OUT:-$here/manifests}"  # the test renders into a temporary folder
common=(--namespace edgeplace-system --kube-version 1.37.2)
"$helm" template edgeplace "$chart" "${common[@]}" --set createNamespace=true > "$out/edgeplace.yaml"
"$helm" template edgeplace "$chart" "${common[@]}" --set secondScheduler.enabled=true \
    --show-only templates/second-scheduler.yaml > "$out/second-scheduler.yaml"
echo "rendered $out/edgeplace.yaml and second-scheduler.yaml with $("$helm" version --short)"
"$helm" template edgeplace "$chart" "${common[@]}" --set kueue.enabled=true \
    --show-only templates/kueue-rbac.yaml --show-only templates/kueue-deployment.yaml > "$out/kueue.yaml"
echo "rendered $out/kueue.yaml (kueue.enabled=true)"
