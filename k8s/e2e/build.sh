#!/usr/bin/env bash
# Build the binaries for the real-cluster e2e tier (see k8s/e2e/README.md).
#
# - kube-apiserver, kube-scheduler and kube-controller-manager are compiled
#   from the k8s.io/kubernetes module pinned in k8s/e2e/go.mod into
#   ${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}/bin-<version>/
#   and the build is skipped when all three are already there.
# - kwok (simulated kubelets: nodes with heartbeats, pods that go Running) is
#   compiled from the sigs.k8s.io/kwok module at KWOK_VERSION into
#   .../kwok-<version>/kwok, skipped when present.
# - sushy-tools (a Redfish BMC emulator, for the Redfish power driver's tests)
#   is installed from PyPI at SUSHY_TOOLS_VERSION into a virtual environment
#   of its own, .../sushy-tools-<version>/, skipped when present.
# - helm (for rendering deploy/helm/edgeplace in tests/e2e/test_manifests.py)
#   is compiled from the helm.sh/helm/v3 module at HELM_VERSION into
#   ${EDGEPLACE_E2E_CACHE:-$HOME/.cache/edgeplace/e2e}/helm-<version>/helm
#   and skipped when it is already there (EDGEPLACE_E2E_SKIP_HELM=1 skips it).
# - Kueue's controller manager (sigs.k8s.io/kueue/cmd/kueue) is compiled from
#   the sigs.k8s.io/kueue module at KUEUE_VERSION into .../kueue-<version>/kueue,
#   with Kueue's own CRDs and webhook manifests copied from the same module
#   (config/components/crd/bases, config/components/webhook/manifests.yaml);
#   skipped when present (EDGEPLACE_E2E_SKIP_KUEUE=1 skips it).
# - etcd is compiled from the go.etcd.io/etcd/server/v3 module pinned in
#   go.mod (k8s/e2e/cmd/etcd) into the same directory; openssl comes from
#   Debian's package when it is not on PATH.
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
# Pinned kwok release (sigs.k8s.io/kwok) and sushy-tools release (PyPI); tests read these lines.
KWOK_VERSION=v0.8.0
kwokdir="$cache/kwok-$KWOK_VERSION"
SUSHY_TOOLS_VERSION=2.2.0
sushydir="$cache/sushy-tools-$SUSHY_TOOLS_VERSION"
# Pinned Kueue release (sigs.k8s.io/kueue, served by the Go module proxy); tests read this line.
KUEUE_VERSION=v0.17.0
kueuedir="$cache/kueue-$KUEUE_VERSION"

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

# --- openssl ------------------------------------------------------------------
if command -v openssl >/dev/null 2>&1; then
    log "openssl: $(command -v openssl) ($(openssl version))"
else
    log "openssl not on PATH: installing Debian package openssl"
    apt_install openssl
fi

# --- kube-apiserver, kube-scheduler, kube-controller-manager -----------------
components=(kube-apiserver kube-scheduler kube-controller-manager)
have_all=1
[[ -x "$bindir/etcd" ]] || have_all=0
for c in "${components[@]}"; do [[ -x "$bindir/$c" ]] || have_all=0; done
if [[ $have_all == 1 ]]; then
    log "${components[*]} $k8s_version already built in $bindir; skipping"
else
    if ! command -v go >/dev/null 2>&1; then
        log "go is not on PATH; install Go (see the go directive in $here/go.mod)" >&2
        exit 1
    fi
    log "building ${components[*]} $k8s_version and etcd with $(go version)"
    log "into $bindir (a first build with empty Go caches took ~8 minutes on 2 cores)"
    mkdir -p "$cache"
    # Build into a scratch dir and move into place only when every binary
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
            "${components[@]/#/k8s.io/kubernetes/cmd/}"
        # etcd's own server, from the go.etcd.io/etcd/server/v3 version in go.mod
        # (cmd/etcd): Debian's etcd 3.4 lacks the watch progress notifications
        # that kube-apiserver needs to serve streaming lists.
        CGO_ENABLED=0 GOFLAGS="-mod=mod ${GOFLAGS:-}" \
            go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" ./cmd/etcd
    )
    mkdir -p "$bindir"
    for c in "${components[@]}" etcd; do mv -f "$tmp/$c" "$bindir/"; done
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

# --- kwok ----------------------------------------------------------------------
if [[ -x "$kwokdir/kwok" ]]; then
    log "kwok $KWOK_VERSION already built in $kwokdir; skipping"
else
    log "building kwok $KWOK_VERSION with $(go version) into $kwokdir (~1.5 minutes on 2 cores)"
    mkdir -p "$cache"
    ktmp="$(mktemp -d "$cache/.build-kwok-$KWOK_VERSION.XXXXXX")"
    (
        cd "$ktmp"
        CGO_ENABLED=0 GOBIN="$ktmp/bin" GOFLAGS="-mod=mod ${GOFLAGS:-}" \
            go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    ) || { rm -rf "$ktmp"; exit 1; }
    mkdir -p "$kwokdir"
    mv -f "$ktmp/bin/kwok" "$kwokdir/kwok"
    rm -rf "$ktmp"
    "$kwokdir/kwok" --version | sed 's/^/[e2e-build] /'
fi
# kwok runs on Stages (what happens to a node or pod, and when). The plain kwok
# binary has none built in: take kwok's own stage files from the module the
# binary was built from (node: initialize + lease heartbeat; pod: ready and
# delete at once, Job pods complete after the delay their annotation asks).
if [[ ! -f "$kwokdir/stages.yaml" ]]; then
    src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
    if [[ ! -d "$src" ]]; then
        (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -x "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>&1) || true
    fi
    stmp="$kwokdir/.stages.$$"
    : > "$stmp"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/general/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [[ -f "$src/$f" ]] || { log "kwok stage file $src/$f is missing" >&2; rm -f "$stmp"; exit 1; }
        printf -- '---\n' >> "$stmp"
        cat "$src/$f" >> "$stmp"
    done
    mv -f "$stmp" "$kwokdir/stages.yaml"
    log "kwok stages: $kwokdir/stages.yaml (from $src)"
fi

# --- Kueue ---------------------------------------------------------------------
# `go install module@version` builds with Kueue's own go.mod (v0.17.0 has no
# replace directives; a release that adds some would need a module of ours, as
# cmd/etcd is for etcd). The manifests come from the module the binary was built
# from; the stamp file is written last, so an interrupted build never looks done.
if [[ "${EDGEPLACE_E2E_SKIP_KUEUE:-0}" == "1" ]]; then
    log "kueue: skipped (EDGEPLACE_E2E_SKIP_KUEUE=1)"
elif [[ -x "$kueuedir/kueue" && -f "$kueuedir/.complete" ]]; then
    log "kueue $KUEUE_VERSION already built in $kueuedir; skipping"
else
    if ! command -v go >/dev/null 2>&1; then
        log "go is not on PATH; install Go to build Kueue" >&2
        exit 1
    fi
    log "building kueue $KUEUE_VERSION with $(go version) into $kueuedir (cold: ~10 minutes on 2 cores)"
    mkdir -p "$cache"
    qtmp="$(mktemp -d "$cache/.build-kueue-$KUEUE_VERSION.XXXXXX")"
    vpkg=sigs.k8s.io/kueue/pkg/version
    (
        cd "$qtmp"
        CGO_ENABLED=0 GOBIN="$qtmp/bin" GOFLAGS="-mod=mod ${GOFLAGS:-}" \
            go install -trimpath -ldflags="-s -w -X $vpkg.GitVersion=$KUEUE_VERSION" \
            "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
    ) || { rm -rf "$qtmp"; exit 1; }
    src="$(go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION/config/components"
    if [[ ! -d "$src/crd/bases" || ! -f "$src/webhook/manifests.yaml" ]]; then
        log "Kueue's manifests are missing under $src" >&2; rm -rf "$qtmp"; exit 1
    fi
    rm -rf "$kueuedir"
    mkdir -p "$kueuedir/crds"
    mv -f "$qtmp/bin/kueue" "$kueuedir/kueue"
    cp "$src"/crd/bases/*.yaml "$kueuedir/crds/"
    cp "$src/webhook/manifests.yaml" "$kueuedir/webhook-manifests.yaml"
    rm -rf "$qtmp"
    touch "$kueuedir/.complete"
    log "kueue: $kueuedir/kueue, $(ls "$kueuedir/crds" | wc -l) CRDs from $src"
fi

# --- sushy-tools (Redfish emulator) -------------------------------------------
# A venv's scripts name its own path, so it is made where it lives; the stamp
# file is written last, so an interrupted install never looks finished.
if [[ -f "$sushydir/.complete" ]]; then
    log "sushy-tools $SUSHY_TOOLS_VERSION already installed in $sushydir; skipping"
else
    log "installing sushy-tools $SUSHY_TOOLS_VERSION from PyPI into $sushydir"
    rm -rf "$sushydir"
    mkdir -p "$cache"
    python3 -m venv "$sushydir"
    "$sushydir/bin/pip" install --quiet --disable-pip-version-check "sushy-tools==$SUSHY_TOOLS_VERSION"
    touch "$sushydir/.complete"
    log "sushy-tools: $("$sushydir/bin/pip" show sushy-tools | awk '/^Version/ {print $2}')"
fi

log "binaries: $bindir"
log "done in $(( $(date +%s) - start ))s"
