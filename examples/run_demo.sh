#!/usr/bin/env bash
# The main job: the example shop under opentelemetry-instrument, demo traffic, then the
# analytics report from the embedded SQLite store.
#   bash examples/run_demo.sh
# Traces go to the console (examples/.demo-traces.log); with the collector-config stack
# running, OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 sends them to Jaeger as well.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v opentelemetry-instrument >/dev/null; then
  echo "opentelemetry-instrument not found: activate the venv and pip install -e '.[examples]' first" >&2
  exit 1
fi

PORT="${PORT:-8000}"
DB="${DEMO_DB:-otel-user-tracking.db}"
TRACES="examples/.demo-traces.log"
rm -f "$DB" "$DB-wal" "$DB-shm"

EXPORTERS="console"
if [[ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]]; then
  EXPORTERS="console,otlp"
  export OTEL_EXPORTER_OTLP_PROTOCOL="${OTEL_EXPORTER_OTLP_PROTOCOL:-http/protobuf}"
fi
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-demo-shop}"
# The example hashes emails with this key; a fresh one per run unless you set your own.
export OTEL_PYTHON_USER_TRACKING_HASH_KEY="${OTEL_PYTHON_USER_TRACKING_HASH_KEY:-$(python -c 'import secrets; print(secrets.token_urlsafe(32))')}"
[[ "$DB" = /* ]] || DB="$PWD/$DB"
export OTEL_PYTHON_USER_TRACKING_SINKS="${OTEL_PYTHON_USER_TRACKING_SINKS:-sqlite:///$DB}"

opentelemetry-instrument --traces_exporter "$EXPORTERS" --metrics_exporter none --logs_exporter none \
  uvicorn examples.fastapi_app:app --host 127.0.0.1 --port "$PORT" >"$TRACES" 2>&1 &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true' EXIT

python examples/demo_requests.py "http://127.0.0.1:$PORT"

# SIGTERM, as a process manager would: the analytics queue is flushed on lifespan shutdown.
kill -TERM "$SERVER"
wait "$SERVER" || true
trap - EXIT

echo "spans carrying user.id: $(grep -c '"user.id"' "$TRACES" || true) (every span is in $TRACES)"
echo
python -m otel_user_tracking report "$DB"
echo
echo "See it as a dashboard (charts, errors linked to Jaeger, a user's journey):"
echo "  otel-user-tracking dashboard ${DEMO_DB:-otel-user-tracking.db}"
echo "  then open http://127.0.0.1:8765 (or write one page: otel-user-tracking report ${DEMO_DB:-otel-user-tracking.db} --html dashboard.html)"
