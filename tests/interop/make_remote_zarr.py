"""Writes a small ERA5-Land-like store in the layout of the DestinE Earth Data Hub, for the mock
upstream of the `era5_land_zarr` tests.

Like the real stores: `valid_time` hourly (int64, "hours since 1950-01-01"), `latitude`
descending at 0.1°, `longitude` 0.0 … 359.9 ascending (the whole globe, so extents across the
Greenwich meridian read both ends), `t2m` float32 in kelvin with NaN over a stretch of "ocean",
the scalar coordinates `number` and `surface`, chunks that split every axis. Zarr v2 is written
consolidated (`.zmetadata`, keys `t2m/0.1.2`); v3 without consolidated metadata (one `zarr.json`
per node, keys `t2m/c/0/1/2`), so the provider's per-array metadata path is exercised too.
The v3 store also marks missing data the way NetCDF-derived stores do, with the float32
default fill value 9.96921e36 instead of NaN, so readers must mask it before any conversion.

Usage: make_remote_zarr.py --out DIR --format 2|3
"""

import argparse

import numpy as np
import pandas as pd
import xarray as xr


def build():
    times = pd.date_range("2024-01-01T00:00", periods=48, freq="h")
    lat = np.round(np.arange(12.0, 4.95, -0.1), 1)  # 71 rows, 12.0 … 5.0
    lon = np.round(np.arange(0.0, 360.0, 0.1), 1)  # 3600 columns
    t = np.arange(len(times))[:, None, None]
    la = lat[None, :, None]
    lo = lon[None, None, :]
    # Smooth in space, a diurnal cycle in time, and distinct everywhere.
    t2m = (
        280.0
        + 8.0 * np.sin(np.radians(lo))
        + 0.5 * la
        + 3.0 * np.sin(2 * np.pi * t / 24.0)
        + 0.001 * lo
    ).astype("float32")
    ocean = (lon > 20.0) & (lon < 40.0)
    t2m[:, :, ocean] = np.nan
    ds = xr.Dataset(
        {"t2m": (("valid_time", "latitude", "longitude"), t2m,
                 {"units": "K", "long_name": "2 metre temperature"})},
        coords={
            "valid_time": times,
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
            "number": 0,
            "surface": 0.0,
        },
    )
    return ds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--format", type=int, choices=[2, 3], required=True)
    a = p.parse_args()
    ds = build()
    encoding = {
        "t2m": {"chunks": (24, 32, 256)},
        "valid_time": {"units": "hours since 1950-01-01", "dtype": "int64", "calendar": "proleptic_gregorian"},
    }
    if a.format == 3:
        encoding["t2m"]["_FillValue"] = np.float32(9.969209968386869e36)
    ds.to_zarr(a.out, mode="w", zarr_format=a.format, consolidated=(a.format == 2),
               encoding=encoding)


if __name__ == "__main__":
    main()
