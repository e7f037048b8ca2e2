#!/usr/bin/env bash
# The version matrix: the test suite on each CPython with the oldest declared dependencies
# ("min", tests/constraints/minimum.txt) and the newest ("latest"), one virtualenv per leg.
#
# Usage: scripts/matrix.sh [LEG ...]
#   LEG is DEPS-PYTHON: DEPS is "min" or "latest", PYTHON is a version such as 3.9 or
#   "system" (the python3 on PATH). Without LEG: every DEPS on 3.9 3.10 3.11 3.12 3.13.
#   A leg whose interpreter is absent is skipped with a message.
# Environment:
#   MATRIX_DIR          where the virtualenvs live (default: /tmp/otel-user-tracking-matrix)
#   MATRIX_PYTEST_ARGS  pytest options (default: -q -m "not slow")
#   MATRIX_REBUILD=1    recreate the virtualenvs
# Example (CI, the minimum versions on the machine's Python): scripts/matrix.sh min-system
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
matrix_dir=${MATRIX_DIR:-/tmp/otel-user-tracking-matrix}
pytest_args=${MATRIX_PYTEST_ARGS:--q -m "not slow"}
legs=("$@")
if [ ${#legs[@]} -eq 0 ]; then
    for py in 3.9 3.10 3.11 3.12 3.13; do legs+=("min-$py" "latest-$py"); done
fi

find_python() {
    local version=$1 candidate
    if [ "$version" = system ]; then command -v python3; return; fi
    candidate=$(command -v "python$version" 2>/dev/null) && { echo "$candidate"; return; }
    for candidate in /root/.pyenv/versions/"$version".*/bin/python"$version" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    return 1
}

declare -A results
status=0
for leg in "${legs[@]}"; do
    deps=${leg%%-*}
    version=${leg#*-}
    case $deps in
        min) constraints=(-c "$root/tests/constraints/minimum.txt") ;;
        latest) constraints=() ;;
        *) echo "matrix: unknown leg $leg (use min-X.Y or latest-X.Y)" >&2; exit 2 ;;
    esac
    if ! python=$(find_python "$version"); then
        echo "matrix: $leg skipped: no python$version on this machine"
        results[$leg]="skipped (no interpreter)"
        continue
    fi
    venv="$matrix_dir/$leg"
    if [ "${MATRIX_REBUILD:-0}" = 1 ] || [ ! -x "$venv/bin/python" ]; then
        rm -rf "$venv"
        echo "matrix: $leg: creating $venv with $python"
        if ! "$python" -m venv "$venv" ||
            ! "$venv/bin/pip" install -q --upgrade pip ||
            ! "$venv/bin/pip" install -q "${constraints[@]}" -e "$root[test]"; then
            results[$leg]="FAILED (install)"
            status=1
            rm -rf "$venv"
            continue
        fi
    fi
    "$venv/bin/python" -c 'import platform, importlib.metadata as m
print("matrix:", platform.python_version(), *(f"{d}=={m.version(d)}" for d in
      ("starlette", "fastapi", "opentelemetry-sdk", "opentelemetry-instrumentation-asgi")))'
    # shellcheck disable=SC2086
    if (cd "$root" && eval "\"$venv/bin/python\" -m pytest -p no:cacheprovider $pytest_args"); then
        results[$leg]="passed"
    else
        results[$leg]="FAILED"
        status=1
    fi
done
echo "matrix summary:"
for leg in "${legs[@]}"; do echo "  $leg: ${results[$leg]:-not run}"; done
exit $status
