"""Operations through the served app: /metrics (token, exposition, counts that move), request ids
in the responses and in LOG_FORMAT=json log lines."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_startup_output import _serve, _stop
from tests.e2e.test_studio import api_user

TOKEN = "metrics-token-for-tests"


def scrape(app) -> dict[tuple[str, tuple], float]:
    with app.client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_need_the_token(serve_app):
    app = serve_app(METRICS_TOKEN=TOKEN)
    with app.client() as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_are_not_there_without_a_token(serve_app):
    app = serve_app()
    with app.client() as http:
        assert http.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


def test_metrics_parse_and_move_after_a_generation(serve_app, database_url, closing):
    app = serve_app(database_url=database_url, METRICS_TOKEN=TOKEN)
    before = scrape(app)
    _, key, client = api_user(app)
    client.predict("a lighthouse", "none", "1:1", "1K", api_name="/generate")
    with app.client(headers={"Authorization": f"Bearer {key}"}) as http:
        assert http.get("/images/" + "0" * 32 + "/png").status_code == 404
    after = scrape(app)

    succeeded = ("studio_generations_total", (("engine", "offline"), ("status", "succeeded")))
    assert after[succeeded] == before.get(succeeded, 0) + 1
    assert after[("studio_ledger_operations_total", (("kind", "capture"),))] >= 1
    assert after[("studio_ledger_operations_total", (("kind", "grant"),))] >= 1
    assert after[("studio_engine_latency_samples", (("engine", "offline"),))] >= 1
    assert after[("studio_engine_latency_seconds", (("engine", "offline"), ("quantile", "0.5")))] >= 0
    assert after[("studio_holds_open", ())] == 0
    assert ("studio_queue_depth", ()) in after
    image_404 = ("studio_http_request_duration_seconds_count", (("method", "GET"), ("route", "/images"),
                                                                ("status", "404")))
    assert after.get(image_404) == before.get(image_404, 0) + 1, [k for k in after if "http" in k[0] and "count" in k[0]]
    assert any(name == "studio_http_request_duration_seconds_count" and ("route", "/gradio_api") in labels
               for name, labels in after)


def test_request_ids_are_echoed(serve_app):
    app = serve_app()
    with app.client() as http:
        mine = http.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert mine.headers["x-request-id"] == "abc-123"
        fresh = http.get("/healthz", headers={"X-Request-ID": "no spaces or\tcontrol"})
        assert len(fresh.headers["x-request-id"]) == 32 and fresh.headers["x-request-id"] != "abc-123"
        assert http.get("/login").headers["x-request-id"] != fresh.headers["x-request-id"]


def test_json_logs_carry_the_request_id(tmp_path):
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    proc, port, lines, reader = _serve(tmp_path, LOG_FORMAT="json")
    try:
        lines.get(timeout=180)  # the start line
        for _ in range(600):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": request_id}, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        assert r.headers["x-request-id"] == request_id
    finally:
        _stop(proc, reader)
    logged = []
    while not lines.empty():
        logged.append(json.loads(lines.get()))
    mine = [line for line in logged if line["request_id"] == request_id]
    assert len(mine) == 1, logged
    assert mine[0]["logger"] == "uvicorn.access" and mine[0]["level"] == "INFO"
    assert "/healthz" in mine[0]["message"] and mine[0]["time"].endswith("+00:00")
