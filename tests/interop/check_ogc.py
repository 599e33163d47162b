"""Checks the OGC API routes of one dataset against the stored Zarr data read independently
with xarray (the reference): every format answers exactly the stored values.

- coverage as CoverageJSON (bbox + datetime interval), as NetCDF (subset), as GeoTIFF (one
  instant; georeferencing from the GeoTIFF tags), as PNG (one instant; transparent exactly
  where data is missing), and thinned with scale-factor;
- EDR position (CoverageJSON and CSV) at a point, and area for a polygon (cells outside are
  null, cells inside equal the store).

Usage: check_ogc.py --url BASE --id DATASET
Prints a JSON summary; exits non-zero on the first mismatch.
"""

import argparse
import csv
import io
import json
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import imagecodecs
import numpy as np
import pandas as pd
import rasterio
import tifffile
import xarray as xr


def fail(msg):
    print(f"check_ogc: {msg}", file=sys.stderr)
    sys.exit(1)


def get(url, expect_type=None):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            ctype = r.headers.get("Content-Type", "")
            if expect_type and not ctype.startswith(expect_type):
                fail(f"GET {url}: Content-Type {ctype!r}, expected {expect_type!r}")
            return r.read()
    except urllib.error.HTTPError as e:
        fail(f"GET {url}: {e.code} {e.read()[:500]!r}")


def same(name, got, want):
    got = np.asarray(got, dtype="float32")
    want = np.asarray(want, dtype="float32")
    if got.shape != want.shape:
        fail(f"{name}: shape {got.shape} vs stored {want.shape}")
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        fail(f"{name}: missing cells differ ({np.isnan(got).sum()} vs {np.isnan(want).sum()})")
    ok = ~np.isnan(want)
    if not np.array_equal(got[ok], want[ok]):
        i = np.argmax(got[ok] != want[ok])
        fail(f"{name}: values differ, e.g. {got[ok][i]} vs stored {want[ok][i]}")


def inside(ring, x, y):
    """Even-odd point in polygon, written here so the check shares no code with the server."""
    odd = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            odd = not odd
    return odd


def covjson_values(doc, var):
    r = doc["ranges"][var]
    vals = np.array([np.nan if v is None else v for v in r["values"]], dtype="float64")
    return vals.astype("float32").reshape(r["shape"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--id", required=True)
    a = p.parse_args()
    base = a.url.rstrip("/")
    col = f"{base}/ogcapi/collections/{a.id}"
    q = urllib.parse.quote

    ref_ds = xr.open_zarr(f"{base}/zarr/{a.id}", consolidated=True, zarr_format=3)
    (var,) = list(ref_ds.data_vars)
    ref = ref_ds[var].load()
    times = pd.to_datetime(ref.t.values)
    summary = {}

    # Coverage, CoverageJSON: bbox + datetime interval.
    t0, t1 = times[1], times[min(3, len(times) - 1)]
    bbox = (-12.4, 7.6, -11.1, 8.9)
    doc = json.loads(get(
        f"{col}/coverage?bbox={','.join(map(str, bbox))}&datetime={t0:%Y-%m-%d}/{t1:%Y-%m-%d}",
        "application/prs.coverage+json"))
    want = ref.sel(t=slice(t0, t1), x=slice(bbox[0], bbox[2]), y=slice(bbox[3], bbox[1]))
    same("coverage covjson", covjson_values(doc, var), want.values)
    ax = doc["domain"]["axes"]
    if not np.isclose(ax["x"]["start"], float(want.x[0])) or ax["y"]["num"] != want.sizes["y"]:
        fail(f"coverage covjson axes {ax['x']} {ax['y']} vs {float(want.x[0])}, {want.sizes['y']}")
    if [pd.Timestamp(v).tz_localize(None) for v in ax["t"]["values"]] != list(pd.to_datetime(want.t.values)):
        fail(f"coverage covjson times {ax['t']['values']}")
    summary["covjson"] = list(want.shape)

    # Coverage, NetCDF: the same window as a subset.
    sub = q(f't("{t0:%Y-%m-%d}":"{t1:%Y-%m-%d}"),x({bbox[0]}:{bbox[2]}),y({bbox[1]}:{bbox[3]})')
    nc = get(f"{col}/coverage?subset={sub}&f=netcdf", "application/x-netcdf")
    with tempfile.NamedTemporaryFile(suffix=".nc") as f:
        f.write(nc)
        f.flush()
        got = xr.open_dataset(f.name).load()
    same("coverage netcdf", got[var].values, want.values)
    lat = got["lat"].values if "lat" in got else got["y"].values
    if not np.allclose(lat, want.y.values):
        fail("coverage netcdf latitudes differ")
    # GDAL-order GeoTransform: origin x, pixel width, 0, origin y, 0, pixel height.
    gt = [float(v) for v in got["crs"].attrs["GeoTransform"].split()]
    step_x = float(want.x[1] - want.x[0])
    step_y = float(want.y[1] - want.y[0])
    if not np.allclose(gt, [float(want.x[0]) - step_x / 2, step_x, 0.0,
                            float(want.y[0]) - step_y / 2, 0.0, step_y]):
        fail(f"netcdf GeoTransform {gt}")
    if got[var].attrs.get("units") != ref.attrs.get("units"):
        fail(f"netcdf units {got[var].attrs.get('units')} vs {ref.attrs.get('units')}")
    summary["netcdf"] = True

    # Coverage, GeoTIFF: one instant, georeferenced.
    t = times[2]
    tif = get(f"{col}/coverage?datetime={t:%Y-%m-%dT%H:%M:%SZ}&f=geotiff", "image/tiff")
    with tifffile.TiffFile(io.BytesIO(tif)) as tf:
        page = tf.pages[0]
        img = page.asarray()
        scale = page.tags[33550].value
        tie = page.tags[33922].value
    same("coverage geotiff", img, ref.sel(t=t).values)
    dx = float(ref.x[1] - ref.x[0])
    if not (np.isclose(scale[0], abs(dx)) and np.isclose(tie[3], float(ref.x[0]) - dx / 2)
            and np.isclose(tie[4], float(ref.y[0]) + abs(float(ref.y[1] - ref.y[0])) / 2)):
        fail(f"geotiff georeferencing scale={scale} tiepoint={tie}")
    # ...and GDAL (through rasterio) reads it as georeferenced, with NaN as nodata.
    with rasterio.MemoryFile(tif) as mem, mem.open() as src:
        if src.crs.to_epsg() != 4326 or src.count != 1:
            fail(f"rasterio: crs {src.crs}, {src.count} bands")
        same("coverage geotiff via rasterio", src.read(1), ref.sel(t=t).values)
        bounds = src.bounds
        west = float(ref.x[0]) - dx / 2
        if not np.isclose(bounds.left, west) or not np.isnan(src.nodata):
            fail(f"rasterio: bounds {bounds}, nodata {src.nodata}")
    # A multi-period GeoTIFF has one band per period.
    tif3 = get(f"{col}/coverage?datetime={t0:%Y-%m-%d}/{t1:%Y-%m-%d}&f=geotiff", "image/tiff")
    with rasterio.MemoryFile(tif3) as mem, mem.open() as src:
        bands = src.read()
    same("coverage geotiff bands", bands, ref.sel(t=slice(t0, t1)).values)
    summary["geotiff"] = list(img.shape)

    # Coverage, PNG: transparent exactly where the data is missing.
    png = imagecodecs.png_decode(get(f"{col}/coverage?datetime={t:%Y-%m-%d}&f=png", "image/png"))
    field = ref.sel(t=t).values
    if png.shape != (*field.shape, 4):
        fail(f"png shape {png.shape} vs {field.shape}")
    if not np.array_equal(png[..., 3] == 0, np.isnan(field)):
        fail("png transparency does not match the missing cells")
    summary["png"] = list(png.shape)

    # Scale factor: every second row and column.
    doc = json.loads(get(f"{col}/coverage?datetime={t:%Y-%m-%d}&scale-factor=2"))
    same("coverage scale-factor", covjson_values(doc, var)[0], field[::2, ::2])

    # EDR position, CoverageJSON and CSV.
    lon, lat = -11.83, 8.47
    series = ref.sel(x=lon, y=lat, method="nearest")
    doc = json.loads(get(f"{col}/position?coords={q(f'POINT({lon} {lat})')}",
                         "application/prs.coverage+json"))
    same("position covjson", covjson_values(doc, var), series.values)
    if doc["domain"]["domainType"] != "PointSeries":
        fail(f"position domainType {doc['domain']['domainType']}")
    text = get(f"{col}/position?coords={q(f'POINT({lon} {lat})')}&f=csv", "text/csv").decode()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    same("position csv", [float(r[3]) if r[3] else np.nan for r in rows], series.values)
    summary["position"] = len(rows)

    # EDR area: a triangle; cells outside are null, inside equal the store.
    poly = [(-12.43, 7.52), (-11.02, 7.57), (-11.71, 8.93), (-12.43, 7.52)]
    wkt = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in poly) + "))"
    doc = json.loads(get(f"{col}/area?coords={q(wkt)}&datetime={t:%Y-%m-%d}"))
    got = covjson_values(doc, var)[0]
    ax = doc["domain"]["axes"]
    xs = np.linspace(ax["x"]["start"], ax["x"]["stop"], ax["x"]["num"])
    ys = np.linspace(ax["y"]["start"], ax["y"]["stop"], ax["y"]["num"])
    window = ref.sel(t=t).sel(x=xs, y=ys, method="nearest").values
    mask = np.array([[inside(poly, x, y) for x in xs] for y in ys])
    same("area", got, np.where(mask, window, np.nan))
    summary["area_cells"] = int(mask.sum())

    # Map tile (WebMercatorQuad z=7 over the data): each pixel shows the cell under its centre,
    # in the colour the coverage PNG gives that cell, and is transparent off the data.
    z, lon, lat = 7, -11.8, 8.5
    n = 2**z
    tx = int((lon + 180) / 360 * n)
    ty = int((1 - np.log(np.tan(np.radians(lat)) + 1 / np.cos(np.radians(lat))) / np.pi) / 2 * n)
    tile = imagecodecs.png_decode(
        get(f"{col}/map/tiles/WebMercatorQuad/{z}/{ty}/{tx}?datetime={t:%Y-%m-%d}", "image/png"))
    if tile.shape != (256, 256, 4):
        fail(f"tile shape {tile.shape}")
    half = 20037508.342789244
    size = 2 * half / n
    c = (np.arange(256) + 0.5) * size / 256
    mx, my = -half + tx * size + c, half - ty * size - c
    lons = np.degrees(mx / (half / np.pi))
    lats = np.degrees(np.arctan(np.sinh(my / (half / np.pi))))
    xs_, ys_ = ref.x.values, ref.y.values
    dx_, dy_ = xs_[1] - xs_[0], ys_[1] - ys_[0]
    cols_ = np.round((lons - xs_[0]) / dx_).astype(int)
    rows_ = np.round((lats - ys_[0]) / dy_).astype(int)
    opaque = 0
    for r in range(256):
        for k in range(256):
            i, j = rows_[r], cols_[k]
            off = not (0 <= i < len(ys_) and 0 <= j < len(xs_))
            if off or np.isnan(field[i, j]):
                if tile[r, k, 3] != 0:
                    fail(f"tile pixel ({r},{k}) should be transparent")
            else:
                opaque += 1
                if not np.array_equal(tile[r, k], png[i, j]):
                    fail(f"tile pixel ({r},{k}) {tile[r, k]} vs the cell's colour {png[i, j]}")
    if opaque == 0:
        fail("the tile shows no data")
    summary["tile_opaque_pixels"] = opaque

    # Downloads: the whole current version, then a bbox + datetime cut, as CF NetCDF.
    for query, want_da in [
        ("", ref),
        (f"&bbox={','.join(map(str, bbox))}&datetime={t0:%Y-%m-%d}/{t1:%Y-%m-%d}", want),
    ]:
        data = get(f"{base}/datasets/{a.id}/download?format=netcdf{query}", "application/x-netcdf")
        with tempfile.NamedTemporaryFile(suffix=".nc") as f:
            f.write(data)
            f.flush()
            got = xr.open_dataset(f.name).load()
        same(f"download{query or ' (whole)'}", got[var].values, want_da.values)
        if list(pd.to_datetime(got.time.values)) != list(pd.to_datetime(want_da.t.values)):
            fail(f"download{query}: times differ")
        if got.attrs.get("Conventions") != "CF-1.10":
            fail(f"download: Conventions {got.attrs.get('Conventions')}")
    summary["download_bytes"] = len(data)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
