#!/usr/bin/env python3
"""Turns the raw records of bench/run.sh (JSON lines) into the markdown report.

Medians over repetitions; Rust run time is finished_at - started_at of the run (claim to
publish, as the platform records it), wall time is client-side POST -> observed `succeeded`
(50 ms polling). Throughput is uncompressed output (t * y * x * 4 bytes) per second of run time.
Peak RSS is VmHWM (Rust) or ru_maxrss (Python) of a fresh process per measurement.

Usage: report.py RAW.jsonl --meta JSON --out latest.md
"""

import argparse
import json
import re
import statistics
from datetime import datetime
from pathlib import Path

MB = 1e6
MIB = 1024 * 1024


def ts(s: str) -> datetime:
    # RFC 3339 with up to nanoseconds; Python takes microseconds.
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00"))
    return datetime.fromisoformat(s)


def run_seconds(run: dict) -> float:
    return (ts(run["finished_at"]) - ts(run["started_at"])).total_seconds()


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def store_shape(store: str, variable: str):
    try:
        meta = json.loads((Path(store) / variable / "zarr.json").read_text())
        return meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    except (OSError, KeyError, ValueError):
        return None, None


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    meta = json.loads(args.meta)
    recs = [json.loads(line) for line in Path(args.raw).read_text().splitlines() if line.strip()]
    by = lambda **kw: [r for r in recs if all(r.get(k) == v for k, v in kw.items())]  # noqa: E731

    md = [
        "# Climate API benchmark results",
        "",
        f"- date: {meta['date']}",
        f"- commit: `{meta['commit']}`",
        f"- machine: {meta['nproc']} × {meta['cpu']}, {meta['mem']}, {meta['os']}",
        f"- toolchain: {meta['rustc']}; release build",
        f"- load average (1/5/15 min) at start → end: {meta.get('loadavg', '?')} "
        "(the start value includes the release build just before; a high end value means other "
        "work shared the cores)",
        f"- repetitions: median of {meta['reps']} fresh processes per figure "
        f"(worker_scaling: see its section); harness time {meta['harness_seconds'] // 60} min "
        f"{meta['harness_seconds'] % 60} s",
        "",
    ]

    # --------------------------------------------------------------------------------------
    nc = by(scenario="netcdf_to_geozarr")
    mem_rows = []
    if nc:
        md += [
            "## netcdf_to_geozarr",
            "",
            "ERA5-Land-layout daily NetCDF (201 × 301, 0.1°) → GeoZarr over `wafr`, K → °C, "
            "zstd 3. Rust: standalone `climate-api`, run time = `finished_at − started_at`; "
            "xarray: `bench/xarray_write.py`, open → store written (imports excluded). "
            "Throughput = uncompressed output (t·y·x·4 bytes) / time.",
            "",
        ]
        rows = []
        for days in sorted({r["days"] for r in nc}):
            rust = by(scenario="netcdf_to_geozarr", impl="rust", days=days)
            xr = by(scenario="netcdf_to_geozarr", impl="xarray", days=days)
            cmp = by(scenario="netcdf_compare", days=days)
            shape, chunks = store_shape(rust[0]["store"], "t2m") if rust else (None, None)
            if shape is None and xr:
                shape, chunks = xr[0]["shape"], xr[0]["chunks"]
            raw_mb = shape[0] * shape[1] * shape[2] * 4 / MB if shape else None
            r_s = med([run_seconds(r["run"]) for r in rust])
            r_wall = med([r["wall_seconds"] for r in rust])
            r_rss = med([r["peak_rss_bytes"] for r in rust])
            r_out = med([r["output_bytes"] for r in rust])
            x_s = med([r["seconds"] for r in xr])
            x_total = med([r["seconds_total"] for r in xr])
            x_rss = med([r["peak_rss_bytes"] for r in xr])
            x_out = med([r["output_bytes"] for r in xr])
            equal = (
                f"yes (max abs diff {cmp[0]['max_abs_diff']:.1e})" if cmp and cmp[0].get("equal") else "not checked"
            )
            rows.append(
                [
                    days,
                    "×".join(map(str, shape)) if shape else "–",
                    "×".join(map(str, chunks)) if chunks else "–",
                    raw_mb,
                    r_s,
                    r_wall,
                    raw_mb / r_s if raw_mb and r_s else None,
                    r_rss / MIB if r_rss else None,
                    x_s,
                    x_total,
                    raw_mb / x_s if raw_mb and x_s else None,
                    x_rss / MIB if x_rss else None,
                    f"{x_s / r_s:.2f}×" if x_s and r_s else "–",
                    f"{x_rss / r_rss:.2f}×" if x_rss and r_rss else "–",
                    f"{r_out / MB:.1f} / {x_out / MB:.1f}" if r_out and x_out else "–",
                    equal,
                ]
            )
            mem_rows.append((days, r_rss, x_rss))
        md.append(
            table(
                [
                    "days",
                    "output t×y×x",
                    "chunks",
                    "uncompressed MB",
                    "Rust run s",
                    "Rust wall s",
                    "Rust MB/s",
                    "Rust peak RSS MiB",
                    "xarray s",
                    "xarray s incl. start-up",
                    "xarray MB/s",
                    "xarray peak RSS MiB",
                    "speed-up (xarray s / Rust s)",
                    "memory ratio (xarray / Rust)",
                    "store MB Rust / xarray",
                    "same values",
                ],
                rows,
            )
        )
        md.append("")

    # --------------------------------------------------------------------------------------
    if len(mem_rows) >= 2:
        md += [
            "## memory_vs_length",
            "",
            "Peak RSS of the same ingestion at two series lengths (from netcdf_to_geozarr). "
            "The Rust pipeline holds one time chunk per segment in flight, so 10× more periods "
            "should not raise its peak materially; xarray without dask loads the whole clipped "
            "series.",
            "",
        ]
        (d0, r0, x0), (d1, r1, x1) = mem_rows[0], mem_rows[-1]
        md.append(
            table(
                ["implementation", f"{d0} days MiB", f"{d1} days MiB", f"ratio ({d1 // d0}× periods)"],
                [
                    ["Rust (climate-api)", r0 / MIB, r1 / MIB, f"{r1 / r0:.2f}×"],
                    ["xarray + zarr-python", x0 / MIB, x1 / MIB, f"{x1 / x0:.2f}×"],
                ],
            )
        )
        md.append("")

    # --------------------------------------------------------------------------------------
    cog = by(scenario="cog_ingest")
    if cog:
        md += [
            "## cog_ingest",
            "",
            "30 CHIRPS-layout daily COGs (global 7200 × 2400, 0.05°, 256² tiles, ~3.9 MB each) → "
            "GeoZarr, standalone. *Tile estimate*: header + full-resolution tiles intersecting "
            "the window, as a fraction of the file (`bench/cog_window.py`). *Read per day*: "
            "`rchar` of the process during the run / days (8 KiB buffered reads; each header is "
            "read when planning, by the segment and for the window read; plus the database).",
            "",
        ]
        rows = []
        for extent in dict.fromkeys(r["extent"] for r in cog):
            runs = by(scenario="cog_ingest", extent=extent)
            est = by(scenario="cog_window", extent=extent)
            days = runs[0]["days"]
            shape, chunks = store_shape(runs[0]["store"], "precip")
            r_s = med([run_seconds(r["run"]) for r in runs])
            wall = med([r["wall_seconds"] for r in runs])
            rss = med([r["peak_rss_bytes"] for r in runs])
            rchar = med([r["rchar_bytes"] for r in runs])
            e = est[0] if est else None
            rows.append(
                [
                    extent,
                    "×".join(map(str, shape[1:])) if shape else "–",
                    "×".join(map(str, chunks)) if chunks else "–",
                    days,
                    r_s,
                    wall,
                    days / r_s if r_s else None,
                    rss / MIB if rss else None,
                    f"{e['tiles'][0]} of {e['tiles'][1]}" if e else "–",
                    f"{(e['tile_bytes'] + e['header_bytes']) / 1e3:.0f} kB ({100 * e['fraction']:.1f} %)" if e else "–",
                    f"{rchar / days / 1e3:.0f} kB ({100 * rchar / days / e['file_bytes']:.1f} %)" if e and rchar else "–",
                ]
            )
        md.append(
            table(
                [
                    "extent",
                    "window y×x",
                    "chunks",
                    "days",
                    "run s",
                    "wall s",
                    "days/s",
                    "peak RSS MiB",
                    "tiles read",
                    "tile estimate per file",
                    "read per day (rchar)",
                ],
                rows,
            )
        )
        md.append("")

    # --------------------------------------------------------------------------------------
    wb = by(scenario="world_bands")
    if wb:
        md += [
            "## world_bands",
            "",
            "30 CHIRPS-layout days over the whole grid (7200 × 2400, one 30-day time chunk, "
            "pyramid levels 1..5), standalone. A time chunk is read and written in bands of "
            "chunk rows that fit `worker.band_memory_mib`; 100000 MiB means one band, the "
            "whole time chunk at once (the behaviour before bands).",
            "",
        ]
        rows = []
        for budget in dict.fromkeys(r["band_mib"] for r in wb):
            runs = by(scenario="world_bands", band_mib=budget)
            r_s = med([run_seconds(r["run"]) for r in runs])
            rss = med([r["peak_rss_bytes"] for r in runs])
            rows.append(
                [
                    budget,
                    runs[0]["days"],
                    r_s,
                    runs[0]["days"] / r_s if r_s else None,
                    rss / MIB if rss else None,
                    runs[0]["output_bytes"] / MIB,
                ]
            )
        md.append(
            table(["band MiB", "days", "run s", "days/s", "peak RSS MiB", "store MiB"], rows)
        )
        md.append("")

    # --------------------------------------------------------------------------------------
    ws = by(scenario="worker_scaling")
    if ws:
        reps = max(r["rep"] for r in ws)
        md += [
            "## worker_scaling",
            "",
            "Distributed: `climate-api serve` + W × `climate-worker` (`worker.concurrency: 1`) on "
            "PostgreSQL, RabbitMQ, Redis and a shared `file://` store, fresh for each W. "
            "(a) 8 independent CHIRPS runs (8 country boxes × 30 days) posted at once; "
            "(b) then one long run (730 NetCDF days over `wafr`), whose segments "
            "(`worker.segment_chunks` time chunks each) the workers share. "
            "Wall = first POST → all observed `succeeded` (50 ms polling). "
            f"Median of {reps} repetition(s). This machine has {meta['nproc']} cores: "
            f"W > {meta['nproc']} oversubscribes them.",
            "",
        ]
        rows = []
        base = None
        for w in sorted({r["workers"] for r in ws}):
            rs = by(scenario="worker_scaling", workers=w)
            wall = med([r["wall_seconds"] for r in rs])
            n = len(rs[0]["runs"])
            hwm = med([r["max_worker_peak_rss_bytes"] for r in rs])
            base = base or wall
            long = by(scenario="worker_scaling_long", workers=w)
            l_wall = med([r["wall_seconds"] for r in long])
            l_run = med([run_seconds(r["run"]) for r in long])
            if w == min(r["workers"] for r in ws):
                l_base = l_wall
            rows.append(
                [
                    w,
                    wall,
                    60 * n / wall,
                    f"{base / wall:.2f}×",
                    f"{long[0]['segments']}" if long else "–",
                    l_wall,
                    l_run,
                    f"{l_base / l_wall:.2f}×" if long and l_base else "–",
                    hwm / MIB if hwm else None,
                ]
            )
        md.append(
            table(
                [
                    "workers",
                    f"(a) {n} runs: wall s",
                    "(a) runs/min",
                    "(a) speed-up vs W=1",
                    "(b) segments",
                    "(b) wall s",
                    "(b) run s",
                    "(b) speed-up vs W=1",
                    "max worker peak RSS MiB",
                ],
                rows,
            )
        )
        md.append("")

    text = "\n".join(md)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
