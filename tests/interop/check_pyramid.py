"""Checks a served store's pyramid with xarray over HTTP, independently of the writer.

Level 0 is the root dataset. Every level the root's `multiscales` attribute lists must open as
a dataset of its own (`group="k"`, consolidated), have half the size of the level before
(rounded up), pixel centres midway between the ones it merges, and values equal to the
NaN-skipping mean of each 2×2 block of the level before.

Usage: check_pyramid.py --url URL --var NAME --levels N
"""

import argparse
import json
import sys
import warnings

import numpy as np
import xarray as xr


def block_mean(values):
    """NaN-skipping 2×2 mean over the last two axes; odd edges average what they have."""
    t, ny, nx = values.shape
    padded = np.full((t, ny + ny % 2, nx + nx % 2), np.nan, dtype="float64")
    padded[:, :ny, :nx] = values
    blocks = padded.reshape(t, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN blocks
        return np.nanmean(blocks, axis=(2, 4))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--var", required=True)
    p.add_argument("--levels", type=int, required=True, help="expected levels above 0")
    a = p.parse_args()

    root = xr.open_zarr(a.url, consolidated=True, zarr_format=3)
    layout = root.attrs["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == [a.var] + [
        f"{k}/{a.var}" for k in range(1, a.levels + 1)
    ], layout
    names = [c["name"] for c in root.attrs["zarr_conventions"]]
    assert "multiscales" in names, names

    previous = root
    shapes = [list(root[a.var].shape)]
    for k in range(1, a.levels + 1):
        level = xr.open_zarr(a.url, group=str(k), consolidated=True, zarr_format=3)
        got = level[a.var]
        prev = previous[a.var].values.astype("float64")
        t, ny, nx = prev.shape
        assert got.shape == (t, -(-ny // 2), -(-nx // 2)), (k, got.shape, prev.shape)
        assert list(layout[k]["spatial:shape"]) == list(got.shape[1:]), layout[k]

        # Centres of complete blocks sit midway between the two they merge.
        for axis in ("y", "x"):
            src = previous[axis].values
            pairs = (src[0:-1:2] + src[1::2]) / 2
            np.testing.assert_allclose(level[axis].values[: len(pairs)], pairs, atol=1e-6)
        assert (level["t"].values == root["t"].values).all()

        np.testing.assert_allclose(
            got.values.astype("float64"), block_mean(prev), rtol=1e-5, atol=1e-4, equal_nan=True
        )
        # The level's own GeoZarr attributes describe its grid.
        a_, _, c_, _, e_, f_ = level.attrs["spatial:transform"]
        assert abs(c_ + 0.5 * a_ - float(level["x"][0])) < 1e-6
        assert abs(f_ + 0.5 * e_ - float(level["y"][0])) < 1e-6
        shapes.append(list(got.shape))
        previous = level

    print(json.dumps({"levels": shapes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
