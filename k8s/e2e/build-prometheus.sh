#!/usr/bin/env bash
# Build a Prometheus server and promtool for the calibration tests
# (tests/e2e/test_calibrate_prometheus.py) from the Go module
# github.com/prometheus/prometheus at PROMETHEUS_MODULE_VERSION into
#   ${EDGEPLACE_CACHE:-$HOME/.cache/edgeplace}/prometheus-<version>/{prometheus,promtool}
# skipped when both binaries are already there.
#
# - `go install module@version` builds with the module's own go.mod (it has no
#   replace directives), outside any main module of ours.
# - Build tag `remove_all_sd` leaves out every service-discovery plugin
#   (plugins/plugin_*.go: AWS, Azure, GCE, Kubernetes, ...): the tests scrape
#   nothing, they read backfilled blocks, and the SDs are most of the build.
# - Without the `builtinassets` tag the web UI is not embedded (web/ui/ui.go
#   serves it from disk, absent here): no npm step; the HTTP API, which is all
#   the tests use, is unaffected.
#
# Idempotent: a second run does nothing but check.
set -euo pipefail

# Module v0.316.0 is Prometheus 3.16.0 (the module's VERSION file); the tests read this line.
PROMETHEUS_MODULE_VERSION=v0.316.0
cache="${EDGEPLACE_CACHE:-$HOME/.cache/edgeplace}"
dest="$cache/prometheus-$PROMETHEUS_MODULE_VERSION"
start=$(date +%s)
log() { printf '[prometheus-build] %s\n' "$*"; }

if [[ -x "$dest/prometheus" && -x "$dest/promtool" ]]; then
    log "prometheus and promtool $PROMETHEUS_MODULE_VERSION already built in $dest; skipping"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    log "go is not on PATH; install Go (1.26 or newer) to build Prometheus" >&2
    exit 1
fi
log "building prometheus and promtool $PROMETHEUS_MODULE_VERSION with $(go version) into $dest"
log "(a first build with an empty Go build cache took about 4 minutes on 2 cores)"
mkdir -p "$cache"
# Build into a scratch dir, move into place only when both linked.
tmp="$(mktemp -d "$cache/.build-prometheus-$PROMETHEUS_MODULE_VERSION.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
vpkg=github.com/prometheus/common/version
(
    cd "$tmp"
    CGO_ENABLED=0 GOBIN="$tmp/bin" GOFLAGS="-mod=mod ${GOFLAGS:-}" \
        go install -trimpath -tags remove_all_sd \
        -ldflags="-s -w -X $vpkg.Version=${PROMETHEUS_MODULE_VERSION} -X $vpkg.Branch=module" \
        "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
)
mkdir -p "$dest"
mv -f "$tmp/bin/prometheus" "$tmp/bin/promtool" "$dest/"
"$dest/prometheus" --version 2>&1 | head -n1 | sed 's/^/[prometheus-build] /'
log "done in $(( $(date +%s) - start ))s"
