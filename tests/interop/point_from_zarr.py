"""A stored Zarr version's values at points, for comparison with the point-timeseries process.

Usage: point_from_zarr.py STORE VARIABLE POINTS

STORE is a version's Zarr store directory as the platform wrote it (read with xarray, as a
client would); POINTS a GeoJSON FeatureCollection of Point features in the store's CRS (WGS84
here). Each point takes the value of the cell whose centre is nearest (xarray's
`sel(method="nearest")`); a point further than half a cell outside the grid has none. Prints
{"<feature id>|<YYYY-MM-DD>": value or null}.
"""

import json
import math
import sys

import numpy as np
import xarray as xr


def main():
    store, variable, points_path = sys.argv[1:4]
    da = xr.open_zarr(store, consolidated=True)[variable]
    tdim, ydim, xdim = da.dims
    xs, ys = da[xdim].values, da[ydim].values
    dx, dy = abs(xs[1] - xs[0]), abs(ys[1] - ys[0])
    with open(points_path) as f:
        points = json.load(f)["features"]
    out = {}
    for p in points:
        x, y = p["geometry"]["coordinates"][:2]
        inside = (
            xs.min() - dx / 2 <= x <= xs.max() + dx / 2
            and ys.min() - dy / 2 <= y <= ys.max() + dy / 2
        )
        series = da.sel({xdim: x, ydim: y}, method="nearest").values if inside else None
        for t in range(da.sizes[tdim]):
            day = str(np.datetime64(da[tdim].values[t], "D"))
            v = None if series is None else float(series[t])
            out[f"{p['id']}|{day}"] = None if v is None or math.isnan(v) else v
    print(json.dumps(out))


if __name__ == "__main__":
    main()
