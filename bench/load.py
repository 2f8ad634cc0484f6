"""Load benchmark of the served app: many users at once, on SQLite and on PostgreSQL.

    python bench/load.py [--store sqlite|postgres|both] [--postgres URL] [--seconds 30] [--users 50]
                         [--balance-callers 100] [--calls 10000] [--latency 2] [--image flat|photo]
    python bench/load.py --short --postgres URL     # the CI version: small, about a minute per store

Three kinds of process share this machine's cores: the real app (`python app.py`: uvicorn +
Gradio queue + Studio + Ledger) on a fresh DATA_DIR with a fresh SQLite file or a fresh
PostgreSQL schema; the fake OpenAI server (`tests/fakes/openai_server.py`, its own process, spoken
to by the real `openai` SDK through OPENAI_BASE_URL, answering after `--latency` seconds); and
this script, a light asyncio + httpx load generator speaking Gradio's REST API (`POST
/gradio_api/call/<api>`, then its event stream) with `Authorization: Bearer <api key>`, plus a
separate prober process that reads `/healthz` and `/theme.css` (neither touches the image flow;
`/theme.css` does not touch the database either) every `--probe-interval` seconds.

The same phases then run against the peer, a bare Gradio app (`bench/bare_space.py`: the same
Gradio and queue concurrency, `/generate` calling the same fake engine through the SDK, `/balance`
returning a number; no accounts, database, guards or post-processing), so what Gradio itself costs
on this machine is printed beside what the studio costs (`--no-peer` skips it; its errors are
printed, not counted in the exit code).

Per store, on a freshly started app:

1. Memory: the app's RSS (`VmRSS` in /proc) after a warm-up, then after `--calls` `/balance`
   API calls (8 at a time) → growth in MB and KiB per call (target: ≤ 100 MB per 10,000 calls).
2. Load: `--users` users each generating one 1K image after another and `--balance-callers`
   callers each asking `/balance` one after another, for `--seconds`; then the calls in flight
   finish. Per endpoint: requests, errors (a non-200 answer, an `event: error`, or no answer),
   p50/p95/max latency; the probes' max latency during the load and when idle just before.
   Targets: 0 errors; `/healthz` max ≤ 250 ms; `/balance` p95 ≤ 1 s.

The targets are figures to read (this machine is shared and noisy); any error makes the script
exit 1. The load generator's own event-loop lag is printed too: when it is large, the latencies
include the generator's delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402

from bench.served import BareSpace, FakeOpenAI, ServedApp  # noqa: E402
from tests.databases import postgres_schema  # noqa: E402 - pytest-free
from tests.fakes.base import free_port  # noqa: E402 - pytest-free

TRIAL_CREDITS = 1_000_000  # never the limit here
# Idle connections are dropped well before uvicorn's 5 s keep-alive timeout, so a request never
# goes out on a connection the server is closing at that moment (a ReadError of the generator's making).
KEEPALIVE_EXPIRY = 2.0
PEER = "bare Gradio (peer)"
TARGETS = {"healthz_max_ms": 250, "balance_p95_ms": 1000, "rss_mb_per_10k_calls": 100}


class Fake(FakeOpenAI):
    """The fake OpenAI server, warmed for 1K squares."""

    def __init__(self, *, image: str, latency: float):
        super().__init__(image=image, latency=latency)
        self.config(warm=[[1024, 1024]])


class App:
    """`python app.py` on a fresh DATA_DIR and database; users and API keys made beforehand with
    the services in this process (then disposed), as `python app.py users create` would."""

    def __init__(self, fake: Fake, *, database_url: str, users: int, concurrency: int):
        from app import build_services
        from services.settings import load_settings

        self.data_dir = Path(tempfile.mkdtemp(prefix="load-bench-"))
        port = free_port()
        config = {"DATA_DIR": str(self.data_dir), "DATABASE_URL": database_url, "SECRET_KEY": "bench-secret",
                  "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": fake.url, "IMAGE_PROVIDER": "openai",
                  "IMAGE_MODEL": "gpt-image-2", "TRIAL_CREDITS": str(TRIAL_CREDITS),
                  "GENERATION_RATE_PER_MINUTE": "1000000", "QUEUE_CONCURRENCY": str(max(64, concurrency))}
        env = {**config, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "STRIPE_SECRET_KEY": "", "SMTP_HOST": "", "GRADIO_ANALYTICS_ENABLED": "False"}
        services = build_services(load_settings(env_file=None, **config))  # migrates the database
        try:
            self.keys = []
            for i in range(users):
                user = services.accounts.create_user(email=f"load{i}-{uuid.uuid4().hex[:8]}@example.com",
                                                     password="benchmark pw")
                self.keys.append(services.accounts.create_api_key(user_id=user.id, name="bench")[1])
        finally:
            services.db.dispose()
        self.served = ServedApp(env, data_dir=self.data_dir)
        self.url = self.served.url
        self.rss_mb, self.log_tail = self.served.rss_mb, self.served.log_tail

    @staticmethod
    def generate_data(prompt: str) -> list:
        return [prompt, "photographic", "1:1", "1K"]

    def stop(self) -> None:
        self.served.stop(remove=True)


class Peer:
    """bench/bare_space.py on a free port, against the same fake engine; same interface as App."""

    def __init__(self, fake: Fake, *, users: int, concurrency: int):
        self.data_dir = Path(tempfile.mkdtemp(prefix="load-peer-"))
        self.keys = [f"peer-{i}" for i in range(users)]  # sent as the app's keys are; the peer ignores them
        self.served = BareSpace(port=free_port(), openai_url=fake.url, data_dir=self.data_dir,
                                concurrency=max(64, concurrency))
        self.url = self.served.url
        self.rss_mb, self.log_tail = self.served.rss_mb, self.served.log_tail

    @staticmethod
    def generate_data(prompt: str) -> list:
        return [prompt]  # the peer's /generate takes the prompt alone

    def stop(self) -> None:
        self.served.stop(remove=True)


# The load generator -----------------------------------------------------------------------------


class Stats:
    """Latencies and errors per endpoint."""

    def __init__(self):
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, Counter] = defaultdict(Counter)

    def summary(self, name: str) -> dict:
        lat = sorted(self.latencies[name])
        errors = sum(self.errors[name].values())
        out = {"requests": len(lat) + errors, "errors": errors,
               "error_kinds": dict(self.errors[name].most_common(5))}
        if lat:
            out.update(p50_ms=_ms(_pct(lat, 0.50)), p95_ms=_ms(_pct(lat, 0.95)), max_ms=_ms(lat[-1]))
        return out


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


async def call(http: httpx.AsyncClient, key: str, api: str, data: list, stats: Stats) -> None:
    """One API call: POST /gradio_api/call/<api>, then read its event stream to the end."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    try:
        step = "POST"
        r = await http.post(f"/gradio_api/call/{api}", json={"data": data}, headers=headers)
        if r.status_code != 200:
            stats.errors[api][f"POST {r.status_code} {r.text[:80]}"] += 1
            return
        event, payload, step = None, None, "GET"
        async with http.stream("GET", f"/gradio_api/call/{api}/{r.json()['event_id']}", headers=headers) as s:
            if s.status_code != 200:
                stats.errors[api][f"GET {s.status_code}"] += 1
                return
            async for line in s.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line[5:].strip()
                    break
        if event != "complete":
            stats.errors[api][f"event {event}: {(payload or '')[:80]}"] += 1
            return
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        stats.errors[api][f"{step} {type(exc).__name__} {str(exc)[:60]}".strip()] += 1
        return
    stats.latencies[api].append(time.perf_counter() - started)


async def loop_lag(stop: asyncio.Event, lags: list[float], tick: float = 0.05) -> None:
    """How late this process's own event loop wakes up: its share of any measured latency."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - t - tick)


def probe(url: str, paths: list[str], interval: float, seconds: float, conn) -> None:
    """In its own process: GET each path every `interval` s; send back {path: [latency or None]}."""
    out: dict[str, list] = {p: [] for p in paths}
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.monotonic() < end:
            tick = time.monotonic()
            for path in paths:
                t = time.perf_counter()
                try:
                    ok = http.get(path).status_code == 200
                except httpx.HTTPError:
                    ok = False
                out[path].append(time.perf_counter() - t if ok else None)
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    conn.send(out)
    conn.close()


class Prober:
    PATHS = ["/healthz", "/theme.css"]

    def __init__(self, url: str, *, interval: float, seconds: float):
        ctx = multiprocessing.get_context("spawn")
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=probe, args=(url, self.PATHS, interval, seconds, sender), daemon=True)
        self.proc.start()

    def result(self) -> dict:
        samples = self.receiver.recv()
        self.proc.join(timeout=10)
        out = {}
        for path, values in samples.items():
            ok = sorted(v for v in values if v is not None)
            out[path] = {"probes": len(values), "errors": len(values) - len(ok),
                         "p50_ms": _ms(_pct(ok, 0.5)) if ok else None, "max_ms": _ms(ok[-1]) if ok else None}
        return out


async def memory_phase(app: App, calls: int, concurrency: int = 8) -> dict:
    stats = Stats()
    limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(base_url=app.url, timeout=120, limits=limits) as http:
        for key in app.keys[:4]:  # warm-up: imports, pools, caches
            await call(http, key, "balance", [], stats)
            await call(http, key, "generate", app.generate_data("warm up"), stats)
        await asyncio.sleep(1)
        before = app.rss_mb()
        queue = iter(range(calls))

        async def worker(i: int):
            for _ in queue:
                await call(http, app.keys[i % len(app.keys)], "balance", [], stats)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    await asyncio.sleep(1)
    after = app.rss_mb()
    growth = after - before
    return {"calls": calls, "wall_s": round(wall, 1), "rss_before_mb": round(before, 1),
            "rss_after_mb": round(after, 1), "growth_mb": round(growth, 1),
            "kib_per_call": round(growth * 1024 / calls, 1),
            "mb_per_10k_calls": round(growth * 10_000 / calls, 1), "balance": stats.summary("balance")}


async def load_phase(app: App, fake: Fake, *, seconds: float, users: int, callers: int,
                     probe_interval: float) -> dict:
    idle = Prober(app.url, interval=probe_interval, seconds=2)
    await asyncio.to_thread(idle.proc.join)
    idle_result = idle.result()

    stats = Stats()
    stop = asyncio.Event()
    lags: list[float] = []
    limits = httpx.Limits(max_connections=users + callers + 20, max_keepalive_connections=users + callers + 20,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    keys = app.keys

    async def generating(i: int):
        n = 0
        while not stop.is_set():
            n += 1
            await call(http, keys[i % len(keys)], "generate", app.generate_data(f"load {i}.{n}: a lighthouse at dusk"),
                       stats)

    async def balance(i: int):
        while not stop.is_set():
            await call(http, keys[(users + i) % len(keys)], "balance", [], stats)

    before = fake.stats()["calls"]
    async with httpx.AsyncClient(base_url=app.url, timeout=300, limits=limits) as http:
        prober = Prober(app.url, interval=probe_interval, seconds=seconds)
        lag_task = asyncio.create_task(loop_lag(stop, lags))
        started = time.perf_counter()
        tasks = [asyncio.create_task(generating(i)) for i in range(users)]
        tasks += [asyncio.create_task(balance(i)) for i in range(callers)]
        await asyncio.sleep(seconds)
        stop.set()
        probes = await asyncio.to_thread(prober.result)
        await asyncio.gather(*tasks)  # the calls in flight finish
        wall = time.perf_counter() - started
        await lag_task
    after = fake.stats()
    engine_calls = sum(n for p, n in after["calls"].items() if p.endswith("/images/generations")) - \
        sum(n for p, n in before.items() if p.endswith("/images/generations"))
    return {"seconds": seconds, "wall_s": round(wall, 1), "users": users, "balance_callers": callers,
            "generate": stats.summary("generate"), "balance": stats.summary("balance"),
            "engine_calls": engine_calls, "engine_peak_in_flight": after["max_in_flight"],
            "probes": probes, "probes_idle": idle_result,
            "generator_lag_max_ms": _ms(max(lags, default=0.0))}


def run_store(store: str, database_url: str, fake: Fake, args) -> dict:
    users, concurrency = max(args.users, args.balance_callers, 4), args.users + args.balance_callers
    if store == PEER:
        app = Peer(fake, users=users, concurrency=concurrency)
    else:
        app = App(fake, database_url=database_url, users=users, concurrency=concurrency)
    try:
        result = {"store": store, "memory": asyncio.run(memory_phase(app, args.calls))}
        result["load"] = asyncio.run(load_phase(app, fake, seconds=args.seconds, users=args.users,
                                                callers=args.balance_callers, probe_interval=args.probe_interval))
        result["app_log_tail"] = app.log_tail() if errors_of(result) else ""
    finally:
        app.stop()
    return result


def errors_of(result: dict) -> int:
    load, memory = result.get("load", {}), result["memory"]
    probe_errors = sum(p["errors"] for p in load.get("probes", {}).values())
    return (memory["balance"]["errors"] + load.get("generate", {}).get("errors", 0)
            + load.get("balance", {}).get("errors", 0) + probe_errors)


def report(r: dict) -> None:
    m, g = r["memory"], r["load"]
    tick = lambda ok: "✓" if ok else "✗"  # noqa: E731
    print(f"== {r['store']} ==")
    print(f"1. RSS {m['rss_before_mb']} MB → {m['rss_after_mb']} MB after {m['calls']:,} /balance calls "
          f"({m['wall_s']} s): +{m['growth_mb']} MB, {m['kib_per_call']} KiB/call → {m['mb_per_10k_calls']} MB "
          f"per 10,000 calls (target ≤ {TARGETS['rss_mb_per_10k_calls']} "
          f"{tick(m['mb_per_10k_calls'] <= TARGETS['rss_mb_per_10k_calls'])}); errors {m['balance']['errors']}")
    print(f"2. {g['users']} generating users + {g['balance_callers']} /balance callers for {g['seconds']} s "
          f"(wall {g['wall_s']} s with the calls in flight; engine calls {g['engine_calls']}, "
          f"peak in flight {g['engine_peak_in_flight']}; load generator lag max {g['generator_lag_max_ms']} ms)")
    for name in ("generate", "balance"):
        s = g[name]
        print(f"   /{name:9s} requests {s['requests']:6d}  errors {s['errors']:5d}  p50 {s.get('p50_ms', '-'):>6} ms"
              f"  p95 {s.get('p95_ms', '-'):>6} ms  max {s.get('max_ms', '-'):>6} ms")
        for kind, n in s["error_kinds"].items():
            print(f"      {n} × {kind}")
    for path, p in g["probes"].items():
        idle = g["probes_idle"][path]
        print(f"   {path:10s} probes {p['probes']:4d}  errors {p['errors']}  p50 {p['p50_ms']} ms  max {p['max_ms']} ms"
              f"  (idle: p50 {idle['p50_ms']} ms, max {idle['max_ms']} ms)")
    healthz_max = g["probes"]["/healthz"]["max_ms"] or 10**9
    balance_p95 = g["balance"].get("p95_ms", 10**9)
    errors = errors_of(r)
    print(f"   targets: errors {errors} (0 {tick(errors == 0)}); /healthz max {healthz_max} ms "
          f"(≤ {TARGETS['healthz_max_ms']} {tick(healthz_max <= TARGETS['healthz_max_ms'])}); "
          f"/balance p95 {balance_p95} ms (≤ {TARGETS['balance_p95_ms']} "
          f"{tick(balance_p95 <= TARGETS['balance_p95_ms'])})")
    if r["app_log_tail"]:
        print("   app log, last lines:\n      " + r["app_log_tail"].replace("\n", "\n      "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default=None,
                        help="default: both when a PostgreSQL URL is known, else sqlite")
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get("TEST_DATABASE_URL", "").strip() or None,
                        help="postgresql+psycopg://... (a fresh schema is used; default $TEST_DATABASE_URL)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=50, help="users generating one image after another")
    parser.add_argument("--balance-callers", type=int, default=100)
    parser.add_argument("--calls", type=int, default=10_000, help="/balance calls of the memory phase")
    parser.add_argument("--latency", type=float, default=2.0, help="the fake engine's latency, seconds")
    parser.add_argument("--image", choices=("flat", "photo"), default="flat",
                        help="the fake's images: flat (cheap to decode; default) or photo-like")
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--short", action="store_true",
                        help="CI: --seconds 8 --users 10 --balance-callers 20 --calls 1000")
    parser.add_argument("--no-peer", action="store_true", help="skip the bare Gradio peer")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.users, args.balance_callers, args.calls = 8.0, 10, 20, 1000
    store = args.store or ("both" if args.postgres else "sqlite")
    if store in ("postgres", "both") and not args.postgres:
        parser.error("--store postgres needs --postgres URL (or TEST_DATABASE_URL)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the app stops and the schema is dropped
    fake = Fake(image=args.image, latency=args.latency)
    results = []
    try:
        if store in ("sqlite", "both"):
            results.append(run_store("sqlite", "", fake, args))
            if not args.json:
                report(results[-1])
        if store in ("postgres", "both"):
            with postgres_schema(args.postgres, "load_bench") as url:
                results.append(run_store("postgres", url, fake, args))
            if not args.json:
                report(results[-1])
        if not args.no_peer:
            results.append(run_store(PEER, "", fake, args))
            if not args.json:
                report(results[-1])
                side_by_side(results)
    finally:
        fake.stop()
    print(json.dumps(results))
    return 1 if any(errors_of(r) for r in results if r["store"] != PEER) else 0


def side_by_side(results: list[dict]) -> None:
    """One line per app: the figures the targets read, the studio's stores next to the peer."""
    print("== side by side (same run, same fake engine) ==")
    for r in results:
        m, g = r["memory"], r["load"]
        print(f"   {r['store']:20s} KiB/call {m['kib_per_call']:6}  generate {g['generate']['requests']:5d} req "
              f"p95 {g['generate'].get('p95_ms', '-'):>6} ms  balance {g['balance']['requests']:5d} req "
              f"p95 {g['balance'].get('p95_ms', '-'):>6} ms  /healthz max {g['probes']['/healthz']['max_ms']} ms  "
              f"errors {errors_of(r)}")


if __name__ == "__main__":
    raise SystemExit(main())
