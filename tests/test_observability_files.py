"""The Grafana dashboard and the alert rules in infra/observability use only metrics corral exports, and every
exported family follows Prometheus' naming conventions with bounded labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from corral_common.metrics import family_names

ROOT = Path(__file__).resolve().parent.parent / "infra" / "observability"
METRIC = re.compile(r"\b((?:corral|process)_[a-z0-9_]+)\b")
UNBOUNDED = {"user", "user_id", "key", "key_id", "prompt", "path", "url", "client", "request_id"}


def _apps() -> dict:
    from corral_api.main import create_app as api
    from corral_auth.main import create_app as auth
    from corral_inference.main import create_app as inference
    from corral_registry.main import create_app as registry
    from corral_websearch.main import create_app as websearch

    return {"api": api(), "auth": auth(), "inference": inference(), "registry": registry(), "websearch": websearch()}


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> dict:
    with pytest.MonkeyPatch.context() as env:
        home = tmp_path_factory.mktemp("home")
        env.setenv("CORRAL_HOME", str(home))
        env.setenv("OLLAMA_MODELS", str(home / "models"))
        env.setenv("CORRAL_METRICS", "1")
        return {name: app.state.metrics.registry for name, app in _apps().items()}


@pytest.fixture(scope="module")
def exported(registries: dict) -> set[str]:
    names = {"corral_scrape_up"}  # added by the gateway's merged view
    for registry in registries.values():
        names |= family_names(registry)
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((ROOT / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("exprs", [_dashboard_exprs, _alert_exprs], ids=["dashboard", "alerts"])
def test_every_metric_the_files_use_is_exported(exprs, exported: set[str]) -> None:
    used = {name for expr in exprs() for name in METRIC.findall(expr)}
    assert used, "no corral metric found"
    assert used <= exported, sorted(used - exported)


def test_the_dashboard_covers_error_rate_ttft_queue_and_readiness() -> None:
    text = " ".join(_dashboard_exprs())
    for needle in ('status=~"5.."', "corral_inference_time_to_first_token_seconds_bucket",
                   "corral_inference_queue_depth", "corral_scrape_up"):
        assert needle in text


def test_names_follow_the_conventions_and_labels_stay_bounded(registries: dict) -> None:
    for service, registry in registries.items():
        for family in registry.collect():
            if family.name.startswith("process_"):
                continue
            assert family.name.startswith("corral_"), (service, family.name)
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
            if family.type == "counter":
                assert not family.name.endswith("_total"), family.name  # the client appends it once
            labels = {label for sample in family.samples for label in sample.labels}
            assert not labels & UNBOUNDED, (family.name, labels)

