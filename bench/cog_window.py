#!/usr/bin/env python3
"""Estimates how much of a (Cloud-Optimised) GeoTIFF a window read needs: the bytes of the
full-resolution tiles that intersect the pixel-centre clip of a bbox, plus the file's header
(everything before the first tile), as a fraction of the file size. Overviews are never read.

Prints one JSON object: window (rows, cols), tiles (read, total), tile_bytes, header_bytes,
file_bytes and fraction, averaged over the files given.

Usage: cog_window.py --bbox W S E N FILE...
"""

import argparse
import json
import math
import os

import tifffile


def centre_range(first_centre: float, step: float, n: int, lo: float, hi: float):
    """Indices whose centre lies within [lo, hi] (step may be negative)."""
    eps = abs(step) * 1e-6
    inside = [i for i in range(n) if lo - eps <= first_centre + i * step <= hi + eps]
    return (inside[0], inside[-1] + 1) if inside else None


def estimate(path: str, bbox):
    west, south, east, north = bbox
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        height, width = page.shape[:2]
        sx, sy, _ = page.tags["ModelPixelScaleTag"].value
        _, _, _, x0, y0, _ = page.tags["ModelTiepointTag"].value
        rows = centre_range(y0 - sy / 2, -sy, height, south, north)
        cols = centre_range(x0 + sx / 2, sx, width, west, east)
        tw, th = page.tilewidth, page.tilelength
        across = math.ceil(width / tw)
        counts = page.databytecounts
        offsets = page.dataoffsets
        tiles = [
            tr * across + tc
            for tr in range(rows[0] // th, (rows[1] - 1) // th + 1)
            for tc in range(cols[0] // tw, (cols[1] - 1) // tw + 1)
        ]
        tile_bytes = sum(counts[i] for i in tiles)
        # Header and IFDs come first; tile data (overviews, then full resolution) follows.
        header = min(o for pg in tif.pages for o in pg.dataoffsets if o > 0)
    size = os.path.getsize(path)
    return {
        "window": [rows[1] - rows[0], cols[1] - cols[0]],
        "tiles": [len(tiles), len(counts)],
        "tile_bytes": tile_bytes,
        "header_bytes": header,
        "file_bytes": size,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"))
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    per = [estimate(f, args.bbox) for f in args.files]
    n = len(per)
    mean = lambda k: sum(p[k] for p in per) / n  # noqa: E731
    out = {
        "files": n,
        "window": per[0]["window"],
        "tiles": per[0]["tiles"],
        "tile_bytes": mean("tile_bytes"),
        "header_bytes": mean("header_bytes"),
        "file_bytes": mean("file_bytes"),
    }
    out["fraction"] = (out["tile_bytes"] + out["header_bytes"]) / out["file_bytes"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
