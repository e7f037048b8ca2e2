"""collector-config/ on paper: the files agree with each other and with the README.

The real binaries run them in test_collector_e2e.py, test_collector_scale_out.py and
test_collector_validate.py; these checks need neither Go nor Docker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent / "collector-config"
COLLECTOR_CONFIGS = ["otelcol.yaml", "otelcol-agent.yaml", "otelcol-gateway.yaml"]
ENV_REFERENCE = re.compile(r"\$\{env:([A-Z0-9_]+)(:-[^}]*)?\}")


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def compose() -> Any:
    return _load("docker-compose.yml")


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_pipelines_use_only_defined_components(name: str) -> None:
    """Every component a pipeline names is defined (an env-selected one among the defined ones)."""
    config = _load(name)
    for pipeline_name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                selected = ENV_REFERENCE.fullmatch(component)
                component = selected.group(2)[2:] if selected else component
                assert component in config[kind], f"{name}: {pipeline_name} uses undefined {component}"


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_memory_limiter_first_and_batch_last_in_every_pipeline(name: str) -> None:
    """The Collector's own advice: refuse early, batch just before export."""
    for pipeline in _load(name)["service"]["pipelines"].values():
        assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch"


@pytest.mark.parametrize("name", ["otelcol.yaml", "otelcol-gateway.yaml"])
def test_the_privacy_step_sits_in_the_traces_and_logs_pipelines(name: str) -> None:
    """transform/privacy, switched by OTELCOL_PRIVACY (off by default), sees spans and events."""
    config = _load(name)
    for signal in ("traces", "logs"):
        processors = config["service"]["pipelines"][signal]["processors"]
        assert "transform/privacy" in processors and "attributes/credentials" in processors
    text = (ROOT / name).read_text()
    assert text.count('"${env:OTELCOL_PRIVACY:-off}" == "on"') == 2


def test_the_agent_balances_traces_and_logs_by_trace_id() -> None:
    """Whole traces reach one gateway; the analytics events follow their trace."""
    config = _load("otelcol-agent.yaml")
    exporter = config["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "traceID" and len(exporter["resolver"]["static"]["hostnames"]) == 2
    for signal in ("traces", "logs"):
        assert config["service"]["pipelines"][signal]["exporters"] == ["loadbalancing"]


def test_documented_variables_and_defaults_match_the_configs() -> None:
    """Every ${env:...} has a default (``:-``, maybe empty), and the folder README documents it."""
    readme = (ROOT / "README.md").read_text()
    for name in [*COLLECTOR_CONFIGS, "jaeger.yaml"]:
        for variable, default in ENV_REFERENCE.findall((ROOT / name).read_text()):
            assert default, f"{name}: ${{env:{variable}}} has no default"
            assert variable in readme, f"{variable} ({name}) is not in collector-config/README.md"


def test_compose_runs_the_same_configs_and_versions_as_the_tests(compose: Any) -> None:
    """Images pinned to the versions build.sh builds; each service mounts the file it is told to read."""
    manifest = _load("builder-config.yaml")
    go_mod = (ROOT / "tools" / "go.mod").read_text()
    services = compose["services"]
    assert services["jaeger"]["image"] == "jaegertracing/jaeger:2.13.0"
    assert "github.com/jaegertracing/jaeger v1.76.0" in go_mod  # v1.76.0 is Jaeger v2.13.0
    assert f"go.opentelemetry.io/collector/cmd/builder v{manifest['dist']['version']}" in go_mod
    for name in ("otel-collector", "agent", "gateway-1", "gateway-2"):
        service = services[name]
        assert service["image"] == f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
        [flag] = [arg for arg in service["command"] if arg.startswith("--config=")]
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        assert (ROOT / mounts[flag.split("=", 1)[1]]).is_file()
    assert "healthcheck" in services["jaeger"]
    assert services["demo-app"]["depends_on"]["jaeger"]["condition"] == "service_healthy"
    assert "16686:16686" in services["jaeger"]["ports"]
    assert {"4317:4317", "4318:4318"} <= set(services["otel-collector"]["ports"])


def test_the_readme_points_apps_at_the_published_http_port(compose: Any) -> None:
    """The endpoint the README gives apps is the Collector's published OTLP/HTTP port."""
    readme = (ROOT / "README.md").read_text()
    endpoint = re.search(r"OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:(\d+)", readme)
    assert endpoint is not None
    assert f"{endpoint.group(1)}:4318" in compose["services"]["otel-collector"]["ports"]
    assert "http://localhost:16686" in readme
