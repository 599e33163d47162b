"""Rewrites a CHIRPS-layout COG the way CHC's real files are reported to be laid out:
512×512 tiles, LZW, no predictor, and −9999 stored as a plain
value with no GDAL_NODATA tag. Georeferencing (GeoTIFF tags) is kept; overviews are dropped.
A block of −9999 is also written over Sierra Leone (12°W–11.5°W, 8°N–8.5°N), where the generated
files (tests/fixtures/make_chirps_cogs.py) have none, so a reader that trusts only the tag shows the value as rain.

Usage: make_chirps_variant.py --src FILE --out FILE
"""

import argparse

import numpy as np
import tifffile

# GeoTIFF tags carried over unchanged: ModelPixelScale, ModelTiepoint, GeoKeyDirectory,
# GeoDoubleParams, GeoAsciiParams.
GEO_TAGS = (33550, 33922, 34735, 34736, 34737)
GDAL_NODATA = 42113


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with tifffile.TiffFile(a.src) as tif:
        page = tif.pages[0]
        data = page.asarray()
        extratags = []
        for code in GEO_TAGS:
            tag = page.tags.get(code)
            if tag is not None:
                extratags.append((code, tag.dtype, tag.count, tag.value, True))
        assert GDAL_NODATA in page.tags, "the source should carry a nodata tag to drop"
    assert data.shape == (2400, 7200), "the global CHIRPS grid, 0.05° from 180°W, 60°N"
    data = data.copy()
    # Rows 1030..1040 are 8.5°N..8°N, columns 3360..3370 are 12°W..11.5°W.
    data[1030:1040, 3360:3370] = -9999.0
    tifffile.imwrite(
        a.out,
        data.astype(np.float32),
        tile=(512, 512),
        compression="lzw",
        extratags=extratags,
    )
    with tifffile.TiffFile(a.out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilewidth == 512 and page.compression == 5
        assert GDAL_NODATA not in page.tags


if __name__ == "__main__":
    main()
