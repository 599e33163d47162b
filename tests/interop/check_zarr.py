"""Interop check: open a dataset served at /zarr with xarray + zarr-python over HTTP and compare
it with the source file read independently (netCDF4 or tifffile), after the template's transform
and the extent's pixel-centre clip.

Exit status 0 and a JSON summary on stdout when everything matches; an assertion error otherwise.
"""

import argparse
import json
import sys

import numpy as np
import xarray as xr


def pixel_centre_mask(coords, lo, hi, step):
    eps = abs(step) * 1e-6
    return (coords >= lo - eps) & (coords <= hi + eps)


def expected_from_netcdf(path, var, start, end, bbox, transform, resample=None):
    src = xr.open_dataset(path, engine="netcdf4")
    rename = {k: v for k, v in {"valid_time": "t", "time": "t", "latitude": "y", "lat": "y",
                                "longitude": "x", "lon": "x"}.items() if k in src.dims or k in src.coords}
    src = src.rename(rename)
    da = src[var].sel(t=slice(np.datetime64(start), np.datetime64(end) + np.timedelta64(1, "D") - np.timedelta64(1, "s")))
    w, s, e, n = bbox
    ys, xs = da["y"].values, da["x"].values
    ymask = pixel_centre_mask(ys, s, n, ys[1] - ys[0])
    xmask = pixel_centre_mask(xs, w, e, xs[1] - xs[0])
    da = da.isel(y=np.where(ymask)[0], x=np.where(xmask)[0])
    if resample:
        # UTC days; a cell missing in any hour is missing in the day.
        da = getattr(da.resample(t="1D"), resample)(skipna=False)
    if da["y"].values[0] < da["y"].values[-1]:
        da = da.isel(y=slice(None, None, -1))
    values = da.values.astype("float64")
    if transform == "kelvin_to_celsius":
        values = values - 273.15
    return values, da["y"].values, da["x"].values, da["t"].values


def expected_from_remote_zarr(path, var, start, end, bbox):
    """A store in the DestinE layout (0..360 longitudes), read with xarray itself."""
    src = xr.open_zarr(path, consolidated=None)
    src = src.assign_coords(longitude=((src["longitude"] + 180.0) % 360.0) - 180.0)
    src = src.sortby("longitude")
    src = src.rename({"valid_time": "t", "latitude": "y", "longitude": "x"})
    da = src[var].sel(t=slice(np.datetime64(start), np.datetime64(end)))
    w, s, e, n = bbox
    ys, xs = da["y"].values, da["x"].values
    ymask = pixel_centre_mask(ys, s, n, ys[1] - ys[0])
    xmask = pixel_centre_mask(xs, w, e, xs[1] - xs[0])
    da = da.isel(y=np.where(ymask)[0], x=np.where(xmask)[0])
    return da.values.astype("float64"), da["y"].values, da["x"].values, da["t"].values


def expected_from_geotiff(path, bbox, nodata):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray().astype("float64")
        scale = page.tags["ModelPixelScaleTag"].value
        tie = page.tags["ModelTiepointTag"].value
    ny, nx = arr.shape
    xs = tie[3] + (np.arange(nx) + 0.5 - tie[0]) * scale[0]
    ys = tie[4] - (np.arange(ny) + 0.5 - tie[1]) * scale[1]
    w, s, e, n = bbox
    ymask = pixel_centre_mask(ys, s, n, scale[1])
    xmask = pixel_centre_mask(xs, w, e, scale[0])
    arr = arr[np.ix_(np.where(ymask)[0], np.where(xmask)[0])]
    arr[arr == nodata] = np.nan
    return arr[None, :, :], ys[ymask], xs[xmask], None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--var", required=True)
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--bbox", required=True, help="w,s,e,n")
    p.add_argument("--transform", default="none")
    p.add_argument("--nodata", type=float, default=-99999.0)
    p.add_argument("--resample", default=None, choices=["mean", "sum", "min", "max"],
                   help="aggregate the source to UTC days with this method first")
    p.add_argument("--time-index", type=int, default=None,
                   help="compare only this time step (GeoTIFF sources hold one field each)")
    a = p.parse_args()
    bbox = [float(v) for v in a.bbox.split(",")]

    # consolidated=True fails if the root zarr.json carries no consolidated metadata.
    ds = xr.open_zarr(a.url, consolidated=True, zarr_format=3)
    got = ds[a.var]
    if a.time_index is not None:
        got = got.isel(t=[a.time_index])
    assert got.dims == ("t", "y", "x"), got.dims
    assert ds.attrs["spatial:dimensions"] == ["y", "x"]

    if a.source.rstrip("/").endswith(".zarr"):
        exp, ys, xs, ts = expected_from_remote_zarr(a.source, a.var, a.start, a.end, bbox)
    elif a.source.endswith(".nc"):
        exp, ys, xs, ts = expected_from_netcdf(a.source, a.var, a.start, a.end, bbox, a.transform,
                                               a.resample)
    else:
        exp, ys, xs, ts = expected_from_geotiff(a.source, bbox, a.nodata)

    assert got.shape == exp.shape, (got.shape, exp.shape)
    np.testing.assert_allclose(ds["y"].values, ys, atol=1e-6)
    np.testing.assert_allclose(ds["x"].values, xs, atol=1e-6)
    if ts is not None:
        assert (ds["t"].values.astype("datetime64[D]") == ts.astype("datetime64[D]")).all(), (
            ds["t"].values, ts)
    values = got.values.astype("float64")
    np.testing.assert_allclose(values, exp, rtol=1e-6, atol=1e-4, equal_nan=True)

    # The GeoZarr transform must place pixel (0, 0) where the y/x coordinates say.
    a_, b_, c_, d_, e_, f_ = ds.attrs["spatial:transform"]
    assert abs(c_ + 0.5 * a_ - float(ds["x"][0])) < 1e-6
    assert abs(f_ + 0.5 * e_ - float(ds["y"][0])) < 1e-6

    print(json.dumps({
        "shape": list(got.shape),
        "max_abs_diff": float(np.nanmax(np.abs(values - exp))) if np.isfinite(exp).any() else 0.0,
        "nan_cells": int(np.isnan(values).sum()),
        "mean": float(np.nanmean(values)),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
