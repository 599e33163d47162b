"""Checks a reprojected store served at /zarr against an independent reference: pyproj (its own
PROJ build) places every target pixel centre on the source grid, numpy interpolates the source
file read with xarray, and the result must equal what the store holds.

Usage: check_reprojection.py --url URL --source FILE.nc --var NAME --start DATE --end DATE
           --crs EPSG:32629 --method nearest|bilinear [--transform kelvin_to_celsius]
"""

import argparse
import json
import sys

import numpy as np
import pyproj
import xarray as xr


def sample(field, r, c, method):
    """Values of `field` ([rows, cols], NaN missing) at fractional positions (r, c)."""
    h, w = field.shape
    out = np.full(r.shape, np.nan)
    inside = (r >= -0.5) & (c >= -0.5) & (r <= h - 0.5) & (c <= w - 0.5)
    if method == "nearest":
        ri = np.clip(np.round(r[inside]).astype(int), 0, h - 1)
        ci = np.clip(np.round(c[inside]).astype(int), 0, w - 1)
        out[inside] = field[ri, ci]
        return out
    rr = np.clip(r[inside], 0, h - 1)
    cc = np.clip(c[inside], 0, w - 1)
    r0, c0 = np.floor(rr).astype(int), np.floor(cc).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = rr - r0, cc - c0
    total = np.zeros(rr.shape)
    weight = np.zeros(rr.shape)
    for (ri, ci, wgt) in [(r0, c0, (1 - fr) * (1 - fc)), (r0, c1, (1 - fr) * fc),
                          (r1, c0, fr * (1 - fc)), (r1, c1, fr * fc)]:
        v = field[ri, ci]
        ok = (wgt > 0) & ~np.isnan(v)
        total += np.where(ok, v * wgt, 0.0)
        weight += np.where(ok, wgt, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[inside] = np.where(weight > 0, total / weight, np.nan)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--var", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--crs", required=True)
    p.add_argument("--method", choices=["nearest", "bilinear"], required=True)
    p.add_argument("--transform", default="none")
    a = p.parse_args()

    ds = xr.open_zarr(a.url, consolidated=True, zarr_format=3)
    assert ds.attrs["proj:code"] == a.crs, ds.attrs["proj:code"]
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    xs, ys = ds["x"].values, ds["y"].values
    assert (np.diff(xs) > 0).all() and (np.diff(ys) < 0).all(), "north-up grid"
    # The GeoZarr transform places pixel (0, 0) where the coordinates say.
    ta, _, tc, _, te, tf = ds.attrs["spatial:transform"]
    assert abs(tc + 0.5 * ta - xs[0]) < 1e-6 and abs(tf + 0.5 * te - ys[0]) < 1e-6

    src = xr.open_dataset(a.source, engine="netcdf4")
    src = src.rename({k: v for k, v in {"valid_time": "t", "time": "t", "latitude": "lat",
                                        "longitude": "lon"}.items() if k in src.variables})
    src = src.sel(t=slice(np.datetime64(a.start),
                          np.datetime64(a.end) + np.timedelta64(1, "D") - np.timedelta64(1, "s")))
    if src["lat"].values[0] < src["lat"].values[-1]:
        src = src.isel(lat=slice(None, None, -1))
    lats, lons = src["lat"].values, src["lon"].values
    values = src[a.var].values.astype("float64")
    if a.transform == "kelvin_to_celsius":
        values = values - 273.15

    to_geo = pyproj.Transformer.from_crs(a.crs, "EPSG:4326", always_xy=True)
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = to_geo.transform(gx, gy)
    r = (lat - lats[0]) / (lats[1] - lats[0])
    c = (lon - lons[0]) / (lons[1] - lons[0])
    expected = np.stack([sample(values[i], r, c, a.method) for i in range(values.shape[0])])

    got = ds[a.var].values.astype("float64")
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4, equal_nan=True)
    valid = int(np.isfinite(got).sum())
    assert valid > 0.5 * got.size, f"only {valid} of {got.size} cells hold values"
    print(json.dumps({"shape": list(got.shape), "valid": valid,
                      "x0": float(xs[0]), "y0": float(ys[0]), "res": float(xs[1] - xs[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
