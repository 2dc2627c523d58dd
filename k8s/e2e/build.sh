#!/usr/bin/env bash
# Build the binaries for the real-cluster e2e tier (see k8s/e2e/README.md).
#
# - kube-apiserver and kube-scheduler are compiled from the k8s.io/kubernetes
#   module pinned in k8s/e2e/go.mod into
#   ${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}/bin-<version>/
#   and the build is skipped when both binaries are already there.
# - helm (for rendering deploy/helm/edgeplace in tests/e2e/test_manifests.py)
#   is compiled from the helm.sh/helm/v3 module at HELM_VERSION into
#   ${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}/helm-<version>/helm
#   and skipped when it is already there (EDGEPLACE_E2E_SKIP_HELM=1 skips it).
# - etcd and openssl come from Debian packages (etcd-server, openssl) when
#   they are not on PATH.
#
# Idempotent: a second run does nothing but check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$(date +%s)

log() { printf '[e2e-build] %s\n' "$*"; }

k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")"
if [[ -z "$k8s_version" ]]; then
    k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
fi
if [[ -z "$k8s_version" ]]; then
    log "cannot find the k8s.io/kubernetes version in $here/go.mod" >&2
    exit 1
fi

cache="${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}"
bindir="$cache/bin-$k8s_version"
# Pinned helm release (a version the Go module proxy serves); tests read this line.
HELM_VERSION=v3.22.0
helmdir="$cache/helm-$HELM_VERSION"

apt_install() {
    # apt_install PACKAGE...: install, refreshing the package lists only if needed.
    export DEBIAN_FRONTEND=noninteractive
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "$@"; then
        log "apt-get install failed; running apt-get update and retrying"
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
    fi
}

# --- etcd and openssl ------------------------------------------------------
if command -v etcd >/dev/null 2>&1; then
    log "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
else
    log "etcd not on PATH: installing Debian package etcd-server"
    apt_install etcd-server
    log "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
fi
if command -v openssl >/dev/null 2>&1; then
    log "openssl: $(command -v openssl) ($(openssl version))"
else
    log "openssl not on PATH: installing Debian package openssl"
    apt_install openssl
fi

# --- kube-apiserver and kube-scheduler --------------------------------------
if [[ -x "$bindir/kube-apiserver" && -x "$bindir/kube-scheduler" ]]; then
    log "kube-apiserver and kube-scheduler $k8s_version already built in $bindir; skipping"
else
    if ! command -v go >/dev/null 2>&1; then
        log "go is not on PATH; install Go (see the go directive in $here/go.mod)" >&2
        exit 1
    fi
    log "building kube-apiserver and kube-scheduler $k8s_version with $(go version)"
    log "into $bindir (a first build with empty Go caches took ~6.5 minutes on 2 cores)"
    mkdir -p "$cache"
    # Build into a scratch dir and move into place only when both binaries
    # linked, so an interrupted build never looks like a finished one.
    tmp="$(mktemp -d "$cache/.build-$k8s_version.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    major="${k8s_version#v}"; major="${major%%.*}"
    minor="${k8s_version#v*.}"; minor="${minor%%.*}"
    vpkg=k8s.io/component-base/version
    ldflags="-s -w"
    ldflags+=" -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor"
    ldflags+=" -X $vpkg.gitTreeState=clean"
    (
        cd "$here"
        CGO_ENABLED=0 GOFLAGS="-mod=mod ${GOFLAGS:-}" \
            go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-scheduler
    )
    mkdir -p "$bindir"
    mv -f "$tmp/kube-apiserver" "$tmp/kube-scheduler" "$bindir/"
    log "built: $(ls -1 "$bindir" | tr '\n' ' ')"
    "$bindir/kube-apiserver" --version | sed 's/^/[e2e-build] /'
fi

# --- helm --------------------------------------------------------------------
if [[ "${EDGEPLACE_E2E_SKIP_HELM:-0}" == "1" ]]; then
    log "helm: skipped (EDGEPLACE_E2E_SKIP_HELM=1)"
elif [[ -x "$helmdir/helm" ]]; then
    log "helm $HELM_VERSION already built in $helmdir; skipping"
else
    if ! command -v go >/dev/null 2>&1; then
        log "go is not on PATH; install Go to build helm" >&2
        exit 1
    fi
    log "building helm $HELM_VERSION with $(go version) into $helmdir (~2.5 minutes on 2 cores with a cold module cache)"
    mkdir -p "$cache"
    htmp="$(mktemp -d "$cache/.build-helm-$HELM_VERSION.XXXXXX")"
    # `go install module@version` builds outside any main module, with the
    # module's own go.mod (no replace directives needed for helm v3).
    (
        cd "$htmp"
        CGO_ENABLED=0 GOBIN="$htmp/bin" GOFLAGS="-mod=mod ${GOFLAGS:-}" \
            go install -trimpath \
            -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
            "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    ) || { rm -rf "$htmp"; exit 1; }
    mkdir -p "$helmdir"
    mv -f "$htmp/bin/helm" "$helmdir/helm"
    rm -rf "$htmp"
    "$helmdir/helm" version --short | sed 's/^/[e2e-build] helm: /'
fi

log "binaries: $bindir"
log "done in $(( $(date +%s) - start ))s"
