#!/usr/bin/env bash
# Builds Jaeger v2 and this project's Collector distribution from their official Go modules
# into a cache outside the repository, for the end-to-end tests and for you:
#
#   bash collector-config/build.sh
#
# Pins: tools/go.mod (Jaeger and the Collector Builder, ocb, as tool dependencies) and
# builder-config.yaml (the Collector's components). A binary whose pins are unchanged is not
# rebuilt. Needs Go >= 1.24 and the Go module proxy. Environment:
#   OTEL_USER_TRACKING_BIN_DIR  where the binaries go (default ~/.cache/otel-user-tracking/bin)
#   BUILD_NICE                  niceness of the go builds (default 15)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin_dir="${OTEL_USER_TRACKING_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-user-tracking/bin}"
work_dir="$(dirname "$bin_dir")/ocb-work"
nice_level="${BUILD_NICE:-15}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: Go is not installed (https://go.dev/dl/, Go >= 1.24)" >&2
    exit 1
fi
mkdir -p "$bin_dir" "$work_dir"

fingerprint() { cat "$@" | sha256sum | cut -c1-16; }
module_version() { (cd "$here/tools" && go list -m -f '{{.Version}}' "$1"); }
elapsed() { echo "$(($(date +%s) - $1))s"; }

# build_one NAME KEY COMMAND...: runs COMMAND unless $bin_dir/NAME was built with KEY.
build_one() {
    local name="$1" key="$2" started
    shift 2
    if [[ -x "$bin_dir/$name" && "$(cat "$bin_dir/$name.key" 2>/dev/null)" == "$key" ]]; then
        echo "build.sh: $name up to date ($key) in $bin_dir"
        return
    fi
    started=$(date +%s)
    echo "build.sh: building $name ($key) ..."
    "$@"
    echo "$key" >"$bin_dir/$name.key"
    echo "build.sh: built $bin_dir/$name in $(elapsed "$started")"
}

build_jaeger() {
    (cd "$here/tools" && nice -n "$nice_level" go build -trimpath -ldflags="$jaeger_ldflags" \
        -o "$bin_dir/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_collector() {
    (cd "$here/tools" && go build -o "$work_dir/ocb" go.opentelemetry.io/collector/cmd/builder)
    rm -rf "$work_dir/_build"
    # ocb writes to output_path (./_build) relative to the working directory.
    (cd "$work_dir" && nice -n "$nice_level" ./ocb --config "$here/builder-config.yaml" \
        --ldflags="-s -w" >"$work_dir/ocb.log" 2>&1) || {
        tail -n 40 "$work_dir/ocb.log" >&2
        return 1
    }
    cp "$work_dir/_build/otelcol-user-tracking" "$bin_dir/otelcol-user-tracking.tmp"
    mv "$bin_dir/otelcol-user-tracking.tmp" "$bin_dir/otelcol-user-tracking"
}

started=$(date +%s)
jaeger_version="$(module_version github.com/jaegertracing/jaeger)"
ocb_version="$(module_version go.opentelemetry.io/collector/cmd/builder)"
jaeger_ldflags="-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$jaeger_version"
build_one jaeger "jaeger-$jaeger_version-$(echo "$jaeger_ldflags" | fingerprint - "$here/tools/go.sum")" build_jaeger
build_one otelcol-user-tracking \
    "ocb-$ocb_version-$(fingerprint "$here/builder-config.yaml" "$here/tools/go.sum")" build_collector
echo "build.sh: done in $(elapsed "$started") ($(go version | cut -d' ' -f3))"
