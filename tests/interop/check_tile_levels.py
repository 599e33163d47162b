"""Checks that a WebMercatorQuad map tile is drawn from the pyramid level that fits its zoom:
the coarsest level whose pixels are no larger than the tile's (measured at the tile centre),
sampled at each tile pixel's centre (nearest cell), coloured with the `greys` colormap over
--range, transparent where the level has no value.

The expected tile is computed here from the levels read with xarray; the colormap's stops are
the documented `greys` stops. The check also confirms that level 0 would have given a visibly
different tile, so a server ignoring the pyramid fails it.

Usage: check_tile_levels.py --url BASE --id DATASET --var VAR --z Z --row Y --col X
       --datetime YYYY-MM-DD --range LO,HI --levels N
"""

import argparse
import json
import sys
import urllib.request

import imagecodecs
import numpy as np
import pandas as pd
import xarray as xr

GREYS = np.array([
    [255, 255, 255], [240, 240, 240], [217, 217, 217], [189, 189, 189], [150, 150, 150],
    [115, 115, 115], [82, 82, 82], [37, 37, 37], [0, 0, 0],
], dtype="float64")
HALF = 20037508.342789244


def fail(msg):
    print(f"check_tile_levels: {msg}", file=sys.stderr)
    sys.exit(1)


def colours(values, lo, hi):
    f = np.nan_to_num(np.clip((values.astype("float64") - lo) / (hi - lo), 0.0, 1.0))
    pos = f * (len(GREYS) - 1)
    i = np.minimum(np.floor(pos).astype(int), len(GREYS) - 1)
    j = np.minimum(i + 1, len(GREYS) - 1)
    w = (pos - i)[..., None]
    rgb = np.round(GREYS[i] + (GREYS[j] - GREYS[i]) * w)
    rgb = np.nan_to_num(rgb).astype("uint8")
    alpha = np.where(np.isnan(values), 0, 255).astype("uint8")[..., None]
    return np.concatenate([np.where(alpha > 0, rgb, 0), alpha], axis=-1)


def main():
    p = argparse.ArgumentParser()
    for name in ["url", "id", "var", "datetime", "range"]:
        p.add_argument(f"--{name}", required=True)
    for name in ["z", "row", "col", "levels"]:
        p.add_argument(f"--{name}", type=int, required=True)
    a = p.parse_args()
    lo, hi = map(float, a.range.split(","))
    base = a.url.rstrip("/")
    url = (f"{base}/ogcapi/collections/{a.id}/map/tiles/WebMercatorQuad/"
           f"{a.z}/{a.row}/{a.col}?datetime={a.datetime}")
    with urllib.request.urlopen(url, timeout=60) as r:
        tile = imagecodecs.png_decode(r.read())

    # Tile pixel centres in lon/lat.
    n = 2 ** a.z
    size = 2 * HALF / n
    c = (np.arange(256) + 0.5) * size / 256
    mx = -HALF + a.col * size + c
    my = HALF - a.row * size - c
    lons = np.degrees(mx / (HALF / np.pi))
    lats = np.degrees(np.arctan(np.sinh(my / (HALF / np.pi))))
    tile_px = max(abs(lons[129] - lons[128]), abs(lats[129] - lats[128]))

    t = pd.Timestamp(a.datetime)
    levels = []
    for k in range(a.levels + 1):
        kw = {} if k == 0 else {"group": str(k)}
        ds = xr.open_zarr(f"{base}/zarr/{a.id}", consolidated=True, zarr_format=3, **kw)
        levels.append(ds)
    steps = [abs(float(ds.x[1] - ds.x[0])) for ds in levels]
    chosen = max([k for k, s in enumerate(steps) if s <= tile_px * 1.000001], default=0)

    def render(ds):
        x, y = ds.x.values, ds.y.values
        dx, dy = x[1] - x[0], y[1] - y[0]
        cols = np.round((lons - x[0]) / dx).astype(int)
        rows = np.round((lats - y[0]) / dy).astype(int)
        field = ds[a.var].sel(t=t).values
        ok_c = (cols >= 0) & (cols < len(x))
        ok_r = (rows >= 0) & (rows < len(y))
        out = np.full((256, 256), np.nan, dtype="float32")
        rr, cc = np.meshgrid(np.where(ok_r, rows, 0), np.where(ok_c, cols, 0), indexing="ij")
        vals = field[rr, cc]
        mask = ok_r[:, None] & ok_c[None, :]
        out[mask] = vals[mask]
        return colours(out, lo, hi)

    want = render(levels[chosen])
    diff = np.abs(tile.astype(int) - want.astype(int)).max(axis=-1)
    if (diff > 1).any():
        r, k = np.argwhere(diff > 1)[0]
        fail(f"pixel ({r},{k}) {tile[r, k]} vs level {chosen}'s {want[r, k]} "
             f"({(diff > 1).sum()} pixels differ)")
    if chosen > 0:
        full = render(levels[0])
        changed = (np.abs(full.astype(int) - want.astype(int)).max(axis=-1) > 1).sum()
        if changed < 100:
            fail(f"level 0 and level {chosen} draw nearly the same tile ({changed} pixels): "
                 "the check cannot tell them apart")
    print(json.dumps({"level": chosen, "tile_px_deg": tile_px, "level_steps": steps}))


if __name__ == "__main__":
    main()
