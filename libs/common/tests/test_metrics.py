"""The shared metrics: route templates and statuses per app, the CORRAL_METRICS switch, the merged exposition."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from corral_common.http import service_app
from corral_common.metrics import AppMetrics, JobMetrics, family_names, merge_expositions


def _app(monkeypatch, enabled: str = "1"):
    monkeypatch.setenv("CORRAL_METRICS", enabled)
    app = service_app("corral demo")

    @app.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    return app


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_requests_are_counted_by_route_template_never_the_raw_path(monkeypatch) -> None:
    client = TestClient(_app(monkeypatch))
    for name in ("a", "b", "c"):
        assert client.get(f"/items/{name}").status_code == 200
    assert client.get("/nowhere/x").status_code == 404
    text = client.get("/metrics").text
    samples = _samples(text)
    assert samples[("corral_http_requests_total",
                    (("method", "GET"), ("route", "/items/{item}"), ("status", "200")))] == 3
    assert samples[("corral_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("corral_http_request_duration_seconds_count", (("method", "GET"), ("route", "/items/{item}")))] == 3
    assert "/items/a" not in text and "/nowhere" not in text


def test_two_apps_in_one_process_keep_their_own_counts(monkeypatch) -> None:
    first, second = TestClient(_app(monkeypatch)), TestClient(_app(monkeypatch))
    first.get("/items/a")
    samples = _samples(second.get("/metrics").text)
    assert ("corral_http_requests_total", (("method", "GET"), ("route", "/items/{item}"), ("status", "200"))) \
        not in samples


def test_corral_metrics_0_installs_nothing(monkeypatch) -> None:
    app = _app(monkeypatch, "0")
    assert app.state.metrics is None
    assert TestClient(app).get("/metrics").status_code == 404


def _exposition(service: str, requests: int) -> str:
    metrics = AppMetrics(service)
    metrics.requests.labels("/api/x", "GET", "200").inc(requests)
    metrics.latency.labels("/api/x", "GET").observe(0.2)
    return metrics.render()


def test_merge_writes_each_family_once_with_a_service_label() -> None:
    text = merge_expositions({"api": _exposition("api", 2), "inference": _exposition("inference", 5)},
                             up={"inference": True, "auth": False})
    assert text.count("# TYPE corral_http_requests_total counter") == 1
    assert text.count("# HELP corral_http_request_duration_seconds ") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {s.labels["service"]: s.value for s in families["corral_http_requests"].samples}
    assert totals == {"api": 2, "inference": 5}
    buckets = [s for s in families["corral_http_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert {s.labels["service"] for s in buckets} == {"api", "inference"}
    up = {s.labels["service"]: s.value for s in families["corral_scrape_up"].samples}
    assert up == {"inference": 1.0, "auth": 0.0}


def test_merge_keeps_the_first_type_when_services_disagree() -> None:
    gauge = "# HELP corral_odd an odd one\n# TYPE corral_odd gauge\ncorral_odd 1\n"
    counter = "# HELP corral_odd_total an odd one\n# TYPE corral_odd_total counter\ncorral_odd_total 7\n"
    families = list(text_string_to_metric_families(merge_expositions({"a": gauge, "b": counter})))
    assert [(f.name, f.type, [s.value for s in f.samples]) for f in families] == [("corral_odd", "gauge", [1.0])]


def test_job_metrics_count_outcomes_and_running_jobs() -> None:
    metrics = AppMetrics("registry")
    jobs = JobMetrics(metrics, "registry")
    jobs.started("pull")
    jobs.started("pull")
    jobs.finished("pull", "success", 1.5)
    samples = _samples(metrics.render())
    assert samples[("corral_registry_jobs_total", (("kind", "pull"), ("outcome", "success")))] == 1
    assert samples[("corral_registry_jobs_in_progress", (("kind", "pull"),))] == 1
    assert samples[("corral_registry_job_duration_seconds_count", (("kind", "pull"),))] == 1
    assert {"corral_registry_jobs_total", "corral_registry_job_duration_seconds_bucket"} <= \
        family_names(metrics.registry)
