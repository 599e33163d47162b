#!/usr/bin/env python3
"""Checks that two Zarr stores hold the same dataset: the Rust store (a path on disk or an
http://…/zarr/{dataset_id} URL) and the xarray baseline.

Compares the data variable (np.testing.assert_allclose, atol 1e-4, NaN == NaN), the x/y
coordinates (atol 1e-9) and the time axis (exact). Exits non-zero with the difference otherwise;
prints one JSON line on success.

Usage: compare.py RUST_STORE XARRAY_STORE [--variable t2m]
"""

import argparse
import json
import warnings

import numpy as np
import xarray as xr

warnings.filterwarnings("ignore", message="Consolidated metadata")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rust")
    ap.add_argument("xarray")
    ap.add_argument("--variable", default="t2m")
    args = ap.parse_args()
    a = xr.open_zarr(args.rust, consolidated=True)
    b = xr.open_zarr(args.xarray, consolidated=True)
    va, vb = a[args.variable], b[args.variable]
    if va.dims != ("t", "y", "x") or vb.dims != ("t", "y", "x"):
        raise SystemExit(f"unexpected dims: rust {va.dims}, xarray {vb.dims}")
    if va.shape != vb.shape:
        raise SystemExit(f"shapes differ: rust {va.shape}, xarray {vb.shape}")
    np.testing.assert_allclose(a["x"].values, b["x"].values, atol=1e-9, err_msg="x")
    np.testing.assert_allclose(a["y"].values, b["y"].values, atol=1e-9, err_msg="y")
    np.testing.assert_array_equal(a["t"].values, b["t"].values, err_msg="t")
    xa, xb = va.values, vb.values
    np.testing.assert_allclose(xa, xb, atol=1e-4, rtol=0, equal_nan=True, err_msg=args.variable)
    diff = np.nanmax(np.abs(xa.astype(np.float64) - xb))
    print(
        json.dumps(
            {
                "equal": True,
                "shape": list(va.shape),
                "max_abs_diff": float(diff),
                "nan_cells": int(np.isnan(xa).sum()),
                "rust_chunks": list(va.encoding.get("chunks") or []),
                "xarray_chunks": list(vb.encoding.get("chunks") or []),
            }
        )
    )


if __name__ == "__main__":
    main()
