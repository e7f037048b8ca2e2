"""Every config in collector-config/ passes the real binaries' ``validate`` command.

The Collector is the project's own build of ``collector-config/builder-config.yaml`` and
Jaeger the v2 binary, both from ``collector-config/build.sh``. Configs that only run "on
paper" here (the gateway's Kafka and ClickHouse routes: no broker or database on these
machines) are validated all the same, once per value of the variable that selects them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ._jaeger import CONFIG_DIR, require_binaries

NOT_COLLECTOR_CONFIGS = {"builder-config.yaml", "docker-compose.yml"}
CASES = [
    ("jaeger.yaml", {}),
    ("otelcol.yaml", {}),
    ("otelcol.yaml", {"OTELCOL_PRIVACY": "on"}),
    ("otelcol-agent.yaml", {}),
    ("otelcol-gateway.yaml", {}),  # analytics to Kafka
    ("otelcol-gateway.yaml", {"OTELCOL_ANALYTICS_EXPORTER": "clickhouse/analytics"}),
    ("otelcol-gateway.yaml", {"OTELCOL_ANALYTICS_EXPORTER": "file/analytics", "OTELCOL_PRIVACY": "on"}),
]


def _validate(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    jaeger, otelcol = require_binaries()
    binary = jaeger if config.name == "jaeger.yaml" else otelcol
    clean = {
        name: value for name, value in os.environ.items() if not name.startswith(("OTELCOL_", "JAEGER_"))
    }
    return subprocess.run(
        [str(binary), "validate", f"--config=file:{config}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("config", "env"), CASES, ids=[f"{c}-{'-'.join(e.values()) or 'defaults'}" for c, e in CASES]
)
def test_config_passes_validate(config: str, env: dict[str, str]) -> None:
    """``<binary> validate --config=<file>`` exits 0 under these variables."""
    done = _validate(CONFIG_DIR / config, env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_config_in_the_folder_is_validated() -> None:
    """A new YAML file in collector-config/ needs a validate case here."""
    configs = {path.name for path in CONFIG_DIR.glob("*.y*ml")} - NOT_COLLECTOR_CONFIGS
    assert configs == {config for config, _ in CASES}


def test_validate_refuses_a_component_the_build_does_not_have(tmp_path: Path) -> None:
    """The check has teeth: an unknown analytics exporter name fails with the component named."""
    done = _validate(CONFIG_DIR / "otelcol-gateway.yaml", {"OTELCOL_ANALYTICS_EXPORTER": "kafka/typo"})
    assert done.returncode != 0 and "kafka/typo" in done.stdout + done.stderr


def test_the_build_has_exactly_the_component_types_the_configs_use() -> None:
    """builder-config.yaml lists no more and no fewer components than the configs use."""
    _, otelcol = require_binaries()
    listed = yaml.safe_load(
        subprocess.run(
            [str(otelcol), "components"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    built = {
        kind: {entry["name"] for entry in listed[kind]}
        for kind in ("receivers", "processors", "exporters", "extensions")
    }
    used: dict[str, set[str]] = {kind: set() for kind in built}
    for path in CONFIG_DIR.glob("otelcol*.yaml"):
        config = yaml.safe_load(path.read_text())
        for kind in used:
            used[kind] |= {name.split("/")[0] for name in config.get(kind) or {}}
    assert used == built
