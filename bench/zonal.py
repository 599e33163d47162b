"""Inputs and the exactextract side of bench/zonal.sh.

  zonal.py inputs DIR          writes the two scenarios' inputs into DIR
  zonal.py exactextract FIELD NX NY NT XMIN YMAX D FEATURES
                               exactextract's means of every band (a source per band in one
                               call: coverage once per feature, as the Rust side does); prints
                               {"seconds", "values", "checksum", "peak_mib"}
"""

import json
import math
import os
import resource
import sys
import time

import numpy as np

# CHIRPS' 0.05° layout over Sierra Leone.
XMIN, YMAX, D, NX, NY = -13.5, 10.1, 0.05, 70, 66


def field(nt, seed):
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 2.0, size=(NY, NX)).astype(np.float32)
    cube = np.empty((nt, NY, NX), dtype=np.float32)
    for t in range(nt):
        cube[t] = base * (1.0 + 0.5 * np.sin(t / 58.1)) + rng.random((NY, NX), dtype=np.float32)
    cube[:, :, :4] = np.nan  # the sea west of the coast
    return cube


def polygons(n, seed):
    rng = np.random.default_rng(seed)
    features = []
    for i in range(n):
        cx, cy = rng.uniform(-13.2, -10.4), rng.uniform(7.0, 9.8)
        k = int(rng.integers(8, 40))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radii = rng.uniform(0.02, 0.25, k)
        ring = [[cx + r * math.cos(a), cy + r * math.sin(a)] for a, r in zip(angles, radii)]
        ring.append(ring[0])
        features.append({"type": "Feature", "id": f"p{i}", "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": features}


def inputs(out):
    os.makedirs(out, exist_ok=True)
    field(3650, 1).tofile(os.path.join(out, "districts_10y.f32"))
    field(365, 2).tofile(os.path.join(out, "polygons_1y.f32"))
    with open(os.path.join(out, "polygons_1000.geojson"), "w") as f:
        json.dump(polygons(1000, 3), f)


def exactextract_side(path, nx, ny, nt, xmin, ymax, d, features_path):
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    cube = np.fromfile(path, dtype="<f4").reshape(nt, ny, nx)
    with open(features_path) as f:
        features = json.load(f)["features"]
    # One source per band in one call: exactextract computes each feature's coverage once and
    # applies it to every band (its fastest path for a stack; a call per band is ~50× slower).
    bands = [
        NumPyRasterSource(cube[t], xmin, ymax - ny * d, xmin + nx * d, ymax, name=f"b{t}")
        for t in range(nt)
    ]
    started = time.perf_counter()
    table = exact_extract(bands, features, ["mean"], output="pandas")
    seconds = time.perf_counter() - started
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": seconds, "values": int(finite.size), "checksum": float(finite.sum()), "peak_mib": peak}))


if __name__ == "__main__":
    if sys.argv[1] == "inputs":
        inputs(sys.argv[2])
    else:
        a = sys.argv[2:]
        exactextract_side(a[0], int(a[1]), int(a[2]), int(a[3]), float(a[4]), float(a[5]), float(a[6]), a[7])
