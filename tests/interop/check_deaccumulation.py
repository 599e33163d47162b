"""Interop check of ERA5-Land precipitation de-accumulation: the hourly amounts served at /zarr
are non-negative, and for every complete UTC day D in the store, the 24 amounts of the hours
ending D 01:00 … D+1 00:00 sum to the source's accumulation at D+1 00:00 (× 1000, m → mm), read
independently from the NetCDF with netCDF4.
"""

import argparse
import json
import sys

import numpy as np
import xarray as xr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    a = p.parse_args()

    ds = xr.open_zarr(a.url, consolidated=True, zarr_format=3)
    got = ds["tp"]
    values = got.values
    assert np.nanmin(values) >= 0.0, f"negative hourly amounts: {np.nanmin(values)}"

    src = xr.open_dataset(a.source, engine="netcdf4")
    src = src.rename({"valid_time": "t", "latitude": "y", "longitude": "x"})
    times = got["t"].values
    checked = 0
    for i, t in enumerate(times):
        ts = np.datetime64(t, "h")
        if (ts - ts.astype("datetime64[D]")).astype(int) != 1 or i + 24 > len(times):
            continue
        day_end = ts + np.timedelta64(23, "h")  # D+1 00:00
        total = values[i : i + 24].sum(axis=0)
        expected = src["tp"].sel(t=day_end).sel(y=got["y"].values, x=got["x"].values, method="nearest").values * 1000.0
        np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-3)
        checked += 1
    assert checked >= 1, "no complete day in the store"
    print(json.dumps({"days_checked": checked, "hours": int(len(times)), "max_mm_per_hour": float(np.nanmax(values))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
