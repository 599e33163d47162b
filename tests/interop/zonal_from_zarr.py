"""exactextract means of a stored Zarr version, for comparison with the zonal-statistics process.

Usage: zonal_from_zarr.py STORE VARIABLE FEATURES

STORE is a version's Zarr store directory as the platform wrote it (read with xarray, as a client
would); FEATURES a GeoJSON FeatureCollection in the store's CRS (WGS84 here). Prints
{"<feature id>|<YYYY-MM-DD>": mean or null} for every time step and feature.
"""

import json
import math
import sys

import numpy as np
import xarray as xr
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource


def main():
    store, variable, features_path = sys.argv[1:4]
    ds = xr.open_zarr(store, consolidated=True)
    da = ds[variable]
    tdim, ydim, xdim = da.dims
    lat, lon = da[ydim].values, da[xdim].values
    dy, dx = abs(lat[1] - lat[0]), abs(lon[1] - lon[0])
    xmin, xmax = lon.min() - dx / 2, lon.max() + dx / 2
    ymin, ymax = lat.min() - dy / 2, lat.max() + dy / 2
    with open(features_path) as f:
        features = json.load(f)["features"]
    for f in features:
        f.setdefault("properties", {})["fid"] = f["id"]
    out = {}
    for t in range(da.sizes[tdim]):
        values = np.asarray(da.isel({tdim: t}).values, dtype=np.float32)
        if lat[0] < lat[-1]:
            values = values[::-1]
        raster = NumPyRasterSource(values, xmin, ymin, xmax, ymax)
        day = str(np.datetime64(da[tdim].values[t], "D"))
        table = exact_extract(raster, features, ["mean"], include_cols=["fid"], output="pandas")
        for rec in table.to_dict(orient="records"):
            v = rec["mean"]
            out[f"{rec['fid']}|{day}"] = None if v is None or math.isnan(v) else float(v)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
