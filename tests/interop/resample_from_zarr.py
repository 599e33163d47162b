"""A derived (resampled) Zarr version against xarray's resample of its stored source.

Usage: resample_from_zarr.py SOURCE DERIVED VARIABLE PERIOD_TYPE METHOD

SOURCE and DERIVED are version store directories as the platform wrote them. The source is
resampled with xarray (weeks from Monday, months, years; labelled by their first day; a cell
missing on any day missing in the result: skipna=False) and compared at the derived store's
periods. Prints {"periods": [first days], "max_abs_diff": number, "nan_match": bool}.
"""

import json
import sys

import numpy as np
import xarray as xr

FREQ = {"weekly": "W-SUN", "monthly": "MS", "yearly": "YS"}


def main():
    source, derived, variable, period_type, method = sys.argv[1:6]
    src = xr.open_zarr(source, consolidated=True)[variable]
    der = xr.open_zarr(derived, consolidated=True)[variable]
    tdim = src.dims[0]
    if period_type == "weekly":
        # Monday-to-Sunday weeks labelled by their Monday.
        grouped = src.resample({tdim: "W-SUN"}, label="left", closed="right")
    else:
        grouped = src.resample({tdim: FREQ[period_type]})
    agg = getattr(grouped, method)(skipna=False)
    times = der[der.dims[0]].values
    if period_type == "weekly":
        # label="left" with closed="right" labels a week by the Sunday before it.
        agg = agg.assign_coords({tdim: agg[tdim].values + np.timedelta64(1, "D")})
    agg = agg.sel({tdim: times})
    a, b = np.asarray(agg.values, dtype=np.float64), np.asarray(der.values, dtype=np.float64)
    both = ~np.isnan(a) & ~np.isnan(b)
    print(
        json.dumps(
            {
                "periods": [str(np.datetime64(t, "D")) for t in times],
                "max_abs_diff": float(np.max(np.abs(a[both] - b[both]))) if both.any() else None,
                "nan_match": bool((np.isnan(a) == np.isnan(b)).all()),
            }
        )
    )


if __name__ == "__main__":
    main()
