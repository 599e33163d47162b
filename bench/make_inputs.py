#!/usr/bin/env python3
"""Generates the benchmark inputs under bench/data/ (idempotent; --force regenerates).

1. ERA5-Land-like daily 2 m temperature NetCDF4 files in the layout of a CDS download
   (`valid_time` int64 "days since 2020-01-01", `latitude` descending, `longitude` ascending,
   float64 at 0.1°, `t2m` float32 K with `_FillValue` NaN, zlib-compressed, one chunk per day)
   over West Africa (lon -20..10, lat 0..20: 201 x 301 pixels), one file per length:
   era5_t2m_0073d.nc and era5_t2m_0730d.nc.

   Values come from the real sample config/samples/era5land_t2m_daily_2025-07_sle.nc: its
   time-mean spatial pattern and its daily anomaly fields are mirror-tiled over the box, so the
   sample sits exactly at its real place (including its real ocean NaN mask off Sierra Leone,
   ~1 % of the box) and tiles seamlessly around it; a latitude-dependent base temperature,
   a seasonal cycle and seeded Gaussian noise are added (about 295-310 K).

2. CHIRPS v3 daily COGs: the three real-layout sample COGs (global 7200 x 2400, 0.05 deg) are
   symlinked cyclically as 30 days bench/data/chirps/2024/chirps-v3.0.rnl.2024.01.DD.cog.

Usage: make_inputs.py [--force] [--days N ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

import netCDF4
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
SAMPLE = REPO / "config" / "samples" / "era5land_t2m_daily_2025-07_sle.nc"
SEED = 20200101

# The generated grid: 0.1 deg, pixel centres on multiples of 0.1.
LON = np.round(np.linspace(-20.0, 10.0, 301), 6)
LAT = np.round(np.linspace(20.0, 0.0, 201), 6)


def nc_name(days: int) -> str:
    return f"era5_t2m_{days:04d}d.nc"


def mirror_index(n: int, origin: int, block: int) -> np.ndarray:
    """Index into a block of `block` cells for each of `n` cells, mirror-tiled so that cell
    `origin` maps to block index 0 (no seams: 0..b-1, b-1..0, 0..b-1, ...)."""
    k = (np.arange(n) - origin) % (2 * block)
    return np.where(k < block, k, 2 * block - 1 - k)


def load_sample():
    with netCDF4.Dataset(SAMPLE) as ds:
        t2m = ds["t2m"][:].filled(np.nan).astype(np.float64)  # (31, 41, 41)
        lat = ds["latitude"][:]
        lon = ds["longitude"][:]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN ocean pixels
        mean_t = np.nanmean(t2m, axis=0)  # time-mean field (NaN over the ocean)
    ocean = np.isnan(t2m).all(axis=0)
    overall = np.nanmean(mean_t)
    pattern = np.where(ocean, 0.0, mean_t - overall)  # spatial anomaly, K
    daily = np.where(np.isnan(t2m), 0.0, t2m - mean_t)  # daily anomaly fields, K
    daily = np.where(ocean[None], 0.0, daily)
    return lat, lon, pattern, daily, ocean


def write_era5(days: int, path: Path) -> None:
    s_lat, s_lon, pattern, daily, ocean = load_sample()
    # Where the sample's first pixel sits in the generated grid.
    r0 = int(np.argmin(np.abs(LAT - s_lat[0])))
    c0 = int(np.argmin(np.abs(LON - s_lon[0])))
    ri = mirror_index(LAT.size, r0, pattern.shape[0])
    ci = mirror_index(LON.size, c0, pattern.shape[1])
    tiled_pattern = pattern[np.ix_(ri, ci)]
    nan_mask = np.zeros((LAT.size, LON.size), dtype=bool)
    nan_mask[r0 : r0 + ocean.shape[0], c0 : c0 + ocean.shape[1]] = ocean

    lat2 = LAT[:, None]
    base = 298.0 + 0.3 * lat2  # warmer towards the Sahel
    amp = 0.5 + 0.25 * lat2  # larger seasonal cycle away from the equator
    rng = np.random.default_rng(SEED)

    tmp = path.with_suffix(".nc.tmp")
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.setncatts(
            {
                "GRIB_centre": "ecmf",
                "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
                "GRIB_subCentre": np.int64(0),
                "Conventions": "CF-1.7",
                "institution": "European Centre for Medium-Range Weather Forecasts",
                "history": "climate-api bench/make_inputs.py: synthetic values derived from a "
                "real ERA5-Land sample (Copernicus Climate Change Service)",
            }
        )
        ds.createDimension("valid_time", days)
        ds.createDimension("latitude", LAT.size)
        ds.createDimension("longitude", LON.size)
        vt = ds.createVariable("valid_time", "i8", ("valid_time",))
        vt.setncatts(
            {
                "long_name": "time",
                "standard_name": "time",
                "units": "days since 2020-01-01",
                "calendar": "proleptic_gregorian",
            }
        )
        vt[:] = np.arange(days, dtype=np.int64)
        la = ds.createVariable("latitude", "f8", ("latitude",))
        la.setncatts(
            {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude",
             "stored_direction": "decreasing"}
        )
        la[:] = LAT
        lo = ds.createVariable("longitude", "f8", ("longitude",))
        lo.setncatts(
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}
        )
        lo[:] = LON
        num = ds.createVariable("number", "i8", ())
        num.setncatts({"long_name": "ensemble member numerical id", "units": "1",
                       "standard_name": "realization"})
        num.assignValue(0)
        v = ds.createVariable(
            "t2m",
            "f4",
            ("valid_time", "latitude", "longitude"),
            zlib=True,
            complevel=1,
            shuffle=True,
            chunksizes=(1, LAT.size, LON.size),
            fill_value=np.float32(np.nan),
        )
        v.setncatts(
            {
                "GRIB_paramId": np.int64(167),
                "GRIB_shortName": "2t",
                "GRIB_units": "K",
                "GRIB_name": "2 metre temperature",
                "long_name": "2 metre temperature",
                "units": "K",
                "standard_name": "unknown",
                "coordinates": "number",
            }
        )
        block = 30
        for d0 in range(0, days, block):
            d1 = min(days, d0 + block)
            doy = np.arange(d0, d1)[:, None, None] % 365.25
            season = amp[None] * np.cos(2 * np.pi * (doy - 110.0) / 365.25)
            anomalies = daily[np.arange(d0, d1) % daily.shape[0]][:, ri][:, :, ci]
            noise = rng.normal(0.0, 0.3, size=(d1 - d0, LAT.size, LON.size))
            vals = base[None] + season + tiled_pattern[None] + anomalies + noise
            vals[:, nan_mask] = np.nan
            v[d0:d1] = vals.astype(np.float32)
    os.replace(tmp, path)


def chirps_cogs_dir(force: bool) -> Path:
    """The three CHIRPS-layout COGs, generated by tests/fixtures/make_chirps_cogs.py."""
    out = DATA / "chirps" / "source"
    if force or not (out / "chirps-v3.0.rnl.2024.01.03.cog").exists():
        subprocess.run(
            [sys.executable, str(REPO / "tests" / "fixtures" / "make_chirps_cogs.py"), "--out", str(out)],
            check=True,
        )
    return out


def link_chirps(force: bool) -> None:
    src = chirps_cogs_dir(force)
    out = DATA / "chirps" / "2024"
    out.mkdir(parents=True, exist_ok=True)
    for day in range(1, 31):
        target = src / f"chirps-v3.0.rnl.2024.01.0{(day - 1) % 3 + 1}.cog"
        link = out / f"chirps-v3.0.rnl.2024.01.{day:02d}.cog"
        if link.is_symlink() or link.exists():
            if not force and link.resolve() == target.resolve():
                continue
            link.unlink()
        link.symlink_to(target)
    print(f"chirps: 30 daily COGs linked in {out} (from {src})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="regenerate existing files")
    ap.add_argument("--days", type=int, nargs="*", default=[73, 730])
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    for days in args.days:
        path = DATA / nc_name(days)
        if path.exists() and not args.force:
            print(f"era5: {path.name} exists")
            continue
        write_era5(days, path)
        print(f"era5: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {days} days)")
    link_chirps(args.force)


if __name__ == "__main__":
    main()
