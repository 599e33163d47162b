"""Temporal aggregates with xarray, for comparison with climate-compute's grouping.

Usage: xarray_resample.py FIELD NT NY NX START

FIELD is a raw little-endian float32 cube of NT daily fields (NY × NX) from day START
(YYYY-MM-DD). Prints, for every rule (weekly: ISO weeks from Monday, monthly, quarterly,
yearly) and method (mean, sum, min, max), {"<rule>|<method>|<period start>": [values…]} with
NaN as null: xarray's `resample` with skipna, and `min_count=1` for sums so that a cell
without data stays without data.
"""

import json
import math
import sys

import numpy as np
import pandas as pd
import xarray as xr

RULES = {"weekly": "W-MON", "monthly": "MS", "quarterly": "QS-JAN", "yearly": "YS"}


def main():
    path, nt, ny, nx, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cube = np.fromfile(path, dtype="<f4").reshape(nt, ny, nx)
    da = xr.DataArray(cube, dims=("time", "y", "x"), coords={"time": pd.date_range(start, periods=nt, freq="D")})
    out = {}
    for name, rule in RULES.items():
        kw = {"closed": "left", "label": "left"} if name == "weekly" else {}
        r = da.resample(time=rule, **kw)
        results = {
            "mean": r.mean(skipna=True),
            "sum": r.sum(skipna=True, min_count=1),
            "min": r.min(skipna=True),
            "max": r.max(skipna=True),
        }
        for method, res in results.items():
            for t in range(res.sizes["time"]):
                day = str(np.datetime64(res["time"].values[t], "D"))
                values = [None if math.isnan(v) else float(v) for v in res.isel(time=t).values.ravel()]
                out[f"{name}|{method}|{day}"] = values
    print(json.dumps(out))


if __name__ == "__main__":
    main()
