"""collector-config/ is correct on paper: parsed and cross-checked (no Docker here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent / "collector-config"


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def config() -> Any:
    return _load("otelcol.yaml")


@pytest.fixture(scope="module")
def compose() -> Any:
    return _load("docker-compose.yml")


def test_pipelines_use_only_defined_components_and_every_component_is_used(config: Any) -> None:
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"pipeline {name} uses undefined {kind[:-1]} {component}"
                used[kind].add(component)
    for kind, names in used.items():
        assert set(config[kind]) == names, f"defined but unused {kind}: {set(config[kind]) - names}"


def test_memory_limiter_first_and_batch_last_in_every_pipeline(config: Any) -> None:
    for name, pipeline in config["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", name
        assert processors[-1] == "batch", name


def test_traces_reach_jaeger_and_analytics_logs_have_a_pipeline(config: Any, compose: Any) -> None:
    pipelines = config["service"]["pipelines"]
    assert "otlp" in pipelines["traces"]["receivers"] and "otlp" in pipelines["logs"]["receivers"]
    jaeger_exporters = [e for e in pipelines["traces"]["exporters"] if e.startswith("otlp/")]
    host, port = config["exporters"][jaeger_exporters[0]]["endpoint"].split(":")
    assert host in compose["services"] and port == "4317"  # Jaeger's OTLP gRPC port
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")


def test_compose_mounts_the_config_the_collector_is_told_to_read(compose: Any) -> None:
    collector = compose["services"]["otel-collector"]
    [flag] = [arg for arg in collector["command"] if arg.startswith("--config=")]
    target = flag.split("=", 1)[1]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in collector["volumes"]}
    assert mounts[target] == "./otelcol.yaml" and (ROOT / "otelcol.yaml").is_file()
    published = {port.split(":")[0] for port in collector["ports"]}
    assert {"4317", "4318"} <= published
    assert "jaeger" in collector["depends_on"]
    assert "16686:16686" in compose["services"]["jaeger"]["ports"]
    assert compose["services"]["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")  # v2: OTLP built in


def test_the_readme_points_apps_at_the_published_http_port(compose: Any) -> None:
    readme = (ROOT / "README.md").read_text()
    endpoint = re.search(r"OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:(\d+)", readme)
    assert (
        endpoint is not None and f"{endpoint.group(1)}:4318" in compose["services"]["otel-collector"]["ports"]
    )
    assert "http://localhost:16686" in readme
