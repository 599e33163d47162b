"""Zonal statistics with exactextract, for comparison with climate-compute.

Usage: exactextract_zonal.py FIELD NX NY XMIN YMAX DX DY FEATURES [--crs EPSG:N]

FIELD is a raw little-endian float32 grid, row-major, NY rows from the north; cells are DX
wide and DY high (both positive), the grid's top-left corner at (XMIN, YMAX). FEATURES is a
GeoJSON FeatureCollection in WGS84 (each feature with an `id`); with --crs the features are
projected to that CRS with pyproj first (always_xy), as the platform projects them with PROJ.
Prints [{"id", "mean", "sum", "count", "min", "max", "stdev", "median", "majority"}], a
statistic without a value as null.
"""

import argparse
import json
import math

import numpy as np
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource

OPS = ["mean", "sum", "count", "min", "max", "stdev", "median", "majority"]


def project(features, crs):
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    def ring(r):
        xs, ys = t.transform([p[0] for p in r], [p[1] for p in r])
        return [[x, y] for x, y in zip(xs, ys)]

    for f in features:
        g = f["geometry"]
        if g["type"] == "Polygon":
            g["coordinates"] = [ring(r) for r in g["coordinates"]]
        else:
            g["coordinates"] = [[ring(r) for r in p] for p in g["coordinates"]]
    return features


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("field")
    ap.add_argument("nx", type=int)
    ap.add_argument("ny", type=int)
    ap.add_argument("xmin", type=float)
    ap.add_argument("ymax", type=float)
    ap.add_argument("dx", type=float)
    ap.add_argument("dy", type=float)
    ap.add_argument("features")
    ap.add_argument("--crs")
    a = ap.parse_args()
    values = np.fromfile(a.field, dtype="<f4").reshape(a.ny, a.nx)
    raster = NumPyRasterSource(
        values, a.xmin, a.ymax - a.ny * a.dy, a.xmin + a.nx * a.dx, a.ymax
    )
    with open(a.features) as f:
        features = json.load(f)["features"]
    for f in features:
        f.setdefault("properties", {})["fid"] = f["id"]
    if a.crs:
        features = project(features, a.crs)
    table = exact_extract(raster, features, OPS, include_cols=["fid"], output="pandas")
    rows = []
    for rec in table.to_dict(orient="records"):
        row = {"id": rec["fid"]}
        for op in OPS:
            v = rec[op]
            row[op] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        rows.append(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
