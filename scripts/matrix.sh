#!/usr/bin/env bash
# The version matrix: the test suite with the oldest declared dependencies ("min", pinned by
# tests/constraints/minimum.txt) and the newest that resolve ("newest"), on the machine's
# python3 and on every other CPython 3.9+ under pyenv, one cached virtualenv per Python and leg.
#
# Usage: scripts/matrix.sh [--versioned] [-p PYTHON]... [LEG]...
#   --versioned  only the tests of what differs between releases (about 15 s a leg): route
#           templates, user resolution, the one-span rule with every other tracing layer, the
#           instrumentor and its entry point, pageviews, exceptions, the OTLP logs sink
#   LEG     min | newest (default: both)
#   PYTHON  X.Y, or "system" for the python3 on PATH (default: system, then every CPython 3.9+
#           under $PYENV_ROOT/versions or /root/.pyenv/versions; a declared version 3.9-3.13
#           with no interpreter is skipped with a message)
# Environment:
#   MATRIX_DIR          virtualenvs (default: ~/.cache/otel-user-tracking/matrix/<X.Y>-<LEG>);
#                       reinstalled when pyproject.toml or the constraints change
#   MATRIX_REBUILD=1    recreate them (to pick up new releases in "newest")
#   MATRIX_PYTEST_ARGS  pytest options (default: the suite without the `slow` marker and
#                       tests/test_collector_*, which need the Collector and Jaeger binaries)
# CI (.ci/run): scripts/matrix.sh -p system min   (the default subset: 45 s to 2.5 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
matrix_dir=${MATRIX_DIR:-$HOME/.cache/otel-user-tracking/matrix}
pytest_args=${MATRIX_PYTEST_ARGS:-'-q -m "not slow" --ignore-glob="tests/test_collector_*"'}
declared=(3.9 3.10 3.11 3.12 3.13)
pyenv_versions=${PYENV_ROOT:-/root/.pyenv}/versions

pythons=() legs=()
while [ $# -gt 0 ]; do
    case $1 in
        -p) pythons+=("$2"); shift 2 ;;
        --versioned)
            pytest_args="-q tests/test_route_templates.py tests/test_identity.py tests/test_combinations.py"
            pytest_args+=" tests/test_instrumentor.py tests/test_entry_point.py tests/test_conversion.py"
            pytest_args+=" tests/test_exceptions.py tests/test_sink_otlp.py tests/test_per_app_options.py"
            pytest_args+=" tests/test_flask.py tests/test_flask_adapter.py tests/test_wsgi_door.py"
            shift ;;
        min | newest) legs+=("$1"); shift ;;
        *) echo "usage: scripts/matrix.sh [--versioned] [-p X.Y|system]... [min|newest]..." >&2; exit 2 ;;
    esac
done
[ ${#legs[@]} -gt 0 ] || legs=(min newest)

# "X.Y path" of an interpreter (the base one if it runs a virtualenv); fails below 3.9.
describe() {
    "$1" -c 'import os, sys
if sys.version_info < (3, 9): sys.exit(1)
print("%d.%d" % sys.version_info[:2], os.path.realpath(getattr(sys, "_base_executable", sys.executable)))' \
        2>/dev/null
}

# One interpreter per X.Y, the machine's python3 first.
declare -A chosen
order=()
choose() {
    local minor path
    read -r minor path < <(describe "$1") || return
    if [ -z "${chosen[$minor]:-}" ]; then chosen[$minor]=$path; order+=("$minor"); fi
}
find_minor() {
    local candidate
    for candidate in "$pyenv_versions/$1".*/bin/python"$1"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    command -v "python$1"
}
system_python=$(command -v python3)
if [ ${#pythons[@]} -eq 0 ]; then
    choose "$system_python"
    for candidate in "$pyenv_versions"/*/bin/python3; do
        [ -x "$candidate" ] && "$candidate" -c 'import platform, sys
sys.exit(platform.python_implementation() != "CPython")' 2>/dev/null && choose "$candidate"
    done
    for minor in "${declared[@]}"; do
        [ -n "${chosen[$minor]:-}" ] || echo "matrix: Python $minor skipped: no interpreter on this machine"
    done
else
    for want in "${pythons[@]}"; do
        if [ "$want" = system ]; then found=$system_python
        elif ! found=$(find_minor "$want"); then
            echo "matrix: Python $want skipped: no interpreter on this machine"
            continue
        fi
        choose "$found" || echo "matrix: $found skipped: not a Python 3.9 or newer"
    done
fi

# The checkout is part of the stamp: the venv installs it editable, so a venv made for another
# clone would test that clone's package with this clone's tests.
stamp=$( (echo "$root"; cat pyproject.toml tests/constraints/minimum.txt) | sha256sum | cut -c1-16)
declare -A results
status=0
for minor in "${order[@]}"; do
    python=${chosen[$minor]}
    for leg in "${legs[@]}"; do
        name="$minor-$leg"
        venv="$matrix_dir/$name"
        constraints=()
        [ "$leg" = min ] && constraints=(-c "$root/tests/constraints/minimum.txt")
        if [ "${MATRIX_REBUILD:-0}" = 1 ] || [ "$(cat "$venv/.python" 2>/dev/null)" != "$python" ]; then
            rm -rf "$venv"
        fi
        if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
            echo "matrix: $name: installing into $venv ($python)"
            if ! { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } ||
                ! "$venv/bin/python" -m pip install -q --upgrade pip ||
                ! "$venv/bin/python" -m pip install -q "${constraints[@]}" -e "$root[test]"; then
                results[$name]="FAILED (install)"
                status=1
                continue
            fi
            echo "$python" >"$venv/.python"
            echo "$stamp" >"$venv/.stamp"
        fi
        "$venv/bin/python" -c 'import platform, importlib.metadata as m
print("matrix:", platform.python_version(), *(f"{d}=={m.version(d)}" for d in
      ("starlette", "fastapi", "flask", "flask-login", "django", "gunicorn", "opentelemetry-sdk",
       "opentelemetry-instrumentation-asgi")))'
        # shellcheck disable=SC2086
        eval "MYPY_CACHE_DIR=\"$venv/.mypy_cache\" \"$venv/bin/python\" -m pytest -p no:cacheprovider $pytest_args" \
            2>&1 | tee "$venv/.last-run"
        if [ "${PIPESTATUS[0]}" -eq 0 ]; then results[$name]="passed:"; else results[$name]="FAILED:"; status=1; fi
        results[$name]+=" $(grep -aE '[0-9]+ (passed|failed|error)' "$venv/.last-run" | tail -1 | tr -d '=')"
    done
done
echo "matrix summary ($pytest_args):"
for minor in "${order[@]}"; do
    for leg in "${legs[@]}"; do echo "  $minor-$leg: ${results[$minor-$leg]:-not run}"; done
done
exit $status
