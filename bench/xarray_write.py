#!/usr/bin/env python3
"""The Python baseline for netcdf_to_geozarr: what a data engineer would write with xarray.

Reads the NetCDF with xarray (no dask: the venv has none, as most notebooks), clips it to the
bbox by the pixel-centre rule (centre within the bbox, inclusive, with the platform's tolerance
of a millionth of a pixel), converts K to degC, renames the dims to t/y/x and writes a Zarr v3
store with zarr-python using the platform's chunk policy (t = 30 for daily; y, x = the clipped
grid capped at 512, halving the largest side until a chunk is <= 8 MiB) and codec (zstd level 3,
no shuffle), float32 with NaN fill, consolidated metadata.

Prints one JSON object: seconds (open -> store written, imports excluded), seconds_total
(including interpreter start-up and imports), peak_rss_bytes (ru_maxrss), output_bytes and the
shape/chunks written.

Usage: xarray_write.py NETCDF OUT_STORE --bbox W S E N [--variable t2m]
"""

import time

T_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
import zarr  # noqa: E402

# zarr-python warns that consolidated metadata is not in the v3 spec; it is what we compare to.
warnings.filterwarnings("ignore", message="Consolidated metadata")

MAX_SPATIAL = 512
MAX_CHUNK_BYTES = 8 * 1024 * 1024


def chunk_policy(t: int, ny: int, nx: int, value_bytes: int = 4) -> tuple[int, int, int]:
    """The platform's chunk policy (shared/domain/src/chunking.rs), without overrides."""
    y = max(1, min(ny, MAX_SPATIAL))
    x = max(1, min(nx, MAX_SPATIAL))
    while t * y * x * value_bytes > MAX_CHUNK_BYTES:
        if y > 1 and (y >= x or x == 1):
            y = -(-y // 2)
        elif x > 1:
            x = -(-x // 2)
        else:
            break
    return t, y, x


def centre_mask(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    step = abs(float(centres[1] - centres[0])) if centres.size > 1 else 0.0
    eps = step * 1e-6
    return (centres >= lo - eps) & (centres <= hi + eps)


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("netcdf")
    ap.add_argument("out")
    ap.add_argument("--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"))
    ap.add_argument("--variable", default="t2m")
    ap.add_argument("--time-chunk", type=int, default=30)
    args = ap.parse_args()
    west, south, east, north = args.bbox
    if os.path.exists(args.out):
        shutil.rmtree(args.out)

    t0 = time.time()
    ds = xr.open_dataset(args.netcdf)
    da = ds[args.variable]
    da = da.isel(
        latitude=np.flatnonzero(centre_mask(ds["latitude"].values, south, north)),
        longitude=np.flatnonzero(centre_mask(ds["longitude"].values, west, east)),
    )
    da = (da - 273.15).astype(np.float32)
    da = da.rename({"valid_time": "t", "latitude": "y", "longitude": "x"}).drop_vars(
        [c for c in da.coords if c not in ("valid_time", "latitude", "longitude")]
    )
    da.attrs = {"units": "degC", "long_name": "2 metre temperature"}
    out = da.to_dataset(name=args.variable)
    nt, ny, nx = out[args.variable].shape
    chunks = chunk_policy(args.time_chunk, ny, nx)
    encoding = {
        args.variable: {
            "compressors": zarr.codecs.ZstdCodec(level=3),
            "chunks": chunks,
            "_FillValue": np.float32(np.nan),
        }
    }
    out.to_zarr(args.out, mode="w", zarr_format=3, consolidated=True, encoding=encoding)
    ds.close()
    t1 = time.time()

    print(
        json.dumps(
            {
                "seconds": round(t1 - t0, 4),
                "seconds_total": round(t1 - T_START, 4),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "output_bytes": dir_bytes(args.out),
                "shape": [nt, ny, nx],
                "chunks": list(chunks),
            }
        )
    )


if __name__ == "__main__":
    main()
