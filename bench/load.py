#!/usr/bin/env python3
"""Load benchmark (`make bench-load`): a distributed instance (climate-api serve + two
climate-worker on PostgreSQL, RabbitMQ, Redis and a local store, release builds) measured two ways:

  runs   trivial ingestions (one day of the bundled ERA5-Land sample, on EXTENTS small extents so
         that runs on different datasets proceed in parallel) POSTed by CONCURRENCY clients:
         each run's latency from POST to `succeeded` (polled every 20 ms), and runs per second
         over the whole batch.
  reads  wrk (2 threads, 32 connections) on three read endpoints while a background client keeps
         ingestions running: a Zarr metadata object, a dataset document and an EDR point series;
         requests/s, p50, p99 and every non-2xx answer or socket error (all must be zero).

Prints a markdown table and writes bench/results/load-latest.md. Needs the machine's services
(scripts/test-services.sh) and wrk (installed if missing).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrk_summary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "load-work"
DB_BASE = os.environ.get("CLIMATE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("CLIMATE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/climate-test")
REDIS = os.environ.get("CLIMATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEMPLATE = "sample_era5land_t2m_daily"
DAYS = [f"2025-07-{d:02d}" for d in range(1, 11)]


def log(msg: str) -> None:
    print(f"[bench-load] {msg}", file=sys.stderr, flush=True)


def http(method: str, url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def extents(n: int) -> list[dict]:
    """n small boxes over Sierra Leone (0.6 degrees), on a grid."""
    out = []
    for i in range(n):
        x = -13.4 + (i % 5) * 0.6
        y = 7.0 + (i // 5) * 0.6
        out.append({"extent_id": f"e{i:02d}", "name": f"box {i}",
                    "bbox": [round(x, 2), round(y, 2), round(x + 0.6, 2), round(y + 0.6, 2)]})
    return out


def config(port: int, db_url: str, queue: str, n_extents: int) -> str:
    lines = [
        "name: load benchmark",
        f"data_dir: {WORK / 'data'}",
        f'server: {{bind: "127.0.0.1:{port}"}}',
        "auth: {enabled: false}   # loopback benchmark",
        f'database: {{url: "{db_url}"}}',
        f'queue: {{url: "{AMQP}", name: "{queue}"}}',
        f'store: {{url: "file://{WORK / "store"}"}}',
        f'cache: {{url: "{REDIS}", prefix: "load:{queue}:"}}',
        "worker: {concurrency: 2}",
        "scheduler: {enabled: false}",
        "extents:",
    ]
    for e in extents(n_extents):
        lines.append(f"  - {json.dumps(e)}")
    return "\n".join(lines) + "\n"


def psql(sql: str) -> None:
    subprocess.run(["psql", DB_BASE, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def wait_ready(base: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a process exited during start-up; logs in {WORK}")
        try:
            if http("GET", f"{base}/ready", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the instance did not become ready")


def one_run(base: str, body: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    status, run = http("POST", f"{base}/ingestions", body)
    if status != 202:
        return time.perf_counter() - t0, f"POST {status}: {run}"
    url = f"{base}/ingestions/{run['ingestion_id']}"
    while True:
        _, run = http("GET", url)
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return time.perf_counter() - t0, run["status"]
        time.sleep(0.02)


def bodies(n_extents: int):
    i = 0
    while True:
        day = DAYS[(i // n_extents) % len(DAYS)]
        yield {"dataset_id": TEMPLATE, "start": day, "end": day,
               "extent_id": f"e{i % n_extents:02d}", "overwrite": True}
        i += 1


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def wrk(url: str, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    return wrk_summary.summary(out, digits=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=160)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--extents", type=int, default=16)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--profile", default="release", help="cargo profile of the binaries (target/PROFILE)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(REPO / "scripts/setup-system.sh"), "wrk"], check=True)
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "store").mkdir(parents=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    db = f"climate_load_{stamp.lower()}"
    psql(f"CREATE DATABASE {db}")
    db_url = DB_BASE.rsplit("/", 1)[0] + f"/{db}"
    port = 18700
    base = f"http://127.0.0.1:{port}"
    cfg = WORK / "climate-api.yaml"
    cfg.write_text(config(port, db_url, f"climate.load.{stamp}", args.extents))
    env = {**os.environ, "RUST_LOG": "warn", "CLIMATE_API_LOG_FORMAT": "json"}
    env.pop("CLIMATE_API_CONFIG", None)
    bins = REPO / "target" / args.profile
    procs: list[subprocess.Popen] = []
    try:
        for name, argv in [("api", [bins / "climate-api", "--config", cfg, "serve"]),
                           ("worker-0", [bins / "climate-worker", "--config", cfg]),
                           ("worker-1", [bins / "climate-worker", "--config", cfg])]:
            logf = open(WORK / f"{name}.log", "w")
            procs.append(subprocess.Popen([str(a) for a in argv], env=env, stdout=logf, stderr=logf))
        wait_ready(base, procs)

        # Warm-up: every dataset once (the first run of a dataset also creates it).
        gen = bodies(args.extents)
        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            warm = list(pool.map(lambda b: one_run(base, b), [next(gen) for _ in range(args.extents)]))
        if any(s != "succeeded" for _, s in warm):
            raise SystemExit(f"warm-up runs failed: {warm}")

        log(f"{args.runs} trivial runs with {args.concurrency} clients")
        batch = [next(gen) for _ in range(args.runs)]
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(lambda b: one_run(base, b), batch))
        wall = time.perf_counter() - t0
        failed = [s for _, s in results if s != "succeeded"]
        lat = [t for t, s in results if s == "succeeded"]
        runs = {"runs": args.runs, "failed": len(failed), "runs_per_s": round(args.runs / wall, 2),
                "p50_ms": round(pct(lat, 50) * 1000, 1), "p99_ms": round(pct(lat, 99) * 1000, 1),
                "mean_ms": round(statistics.mean(lat) * 1000, 1)}
        log(json.dumps(runs))

        # Reads while ingestions keep running in the background.
        stop = threading.Event()
        background: list[str] = []

        def keep_ingesting():
            while not stop.is_set():
                background.append(one_run(base, next(gen))[1])

        threads = [threading.Thread(target=keep_ingesting) for _ in range(2)]
        for t in threads:
            t.start()
        ds = f"{TEMPLATE}_e00"
        reads = {}
        for name, path in [("zarr metadata", f"/zarr/{ds}/t2m/zarr.json"),
                           ("dataset document", f"/datasets/{ds}"),
                           ("EDR position", f"/ogcapi/collections/{ds}/position?coords=POINT(-13.1%207.3)")]:
            status, _ = http("GET", base + path)
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}")
            log(f"wrk {path}")
            reads[name] = wrk(base + path, args.wrk_seconds)
        stop.set()
        for t in threads:
            t.join()
        bg_failed = [s for s in background if s != "succeeded"]

        lines = [
            "| measurement | figure |", "|---|---|",
            f"| trivial runs (POST → succeeded), {args.concurrency} clients, {args.runs} runs | "
            f"{runs['runs_per_s']} runs/s, p50 {runs['p50_ms']} ms, p99 {runs['p99_ms']} ms, "
            f"{runs['failed']} failed |",
        ]
        for name, r in reads.items():
            lines.append(f"| {name} under load (wrk 2×32) | {r['requests_per_s']} req/s, p50 {r['p50_ms']} ms, "
                         f"p99 {r['p99_ms']} ms, {r['non_2xx']} non-2xx, {r['socket_errors']} socket errors |")
        lines.append(f"| background ingestions during the reads | {len(background)} runs, "
                     f"{len(bg_failed)} not succeeded |")
        table = "\n".join(lines)
        print(table)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "load-latest.md").write_text(
            f"Load benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{table}\n")
        errors = sum(r["non_2xx"] + r["socket_errors"] for r in reads.values())
        if runs["failed"] or bg_failed or errors:
            raise SystemExit("errors under load (see the table)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        except subprocess.CalledProcessError:
            log(f"could not drop database {db}")


if __name__ == "__main__":
    main()
