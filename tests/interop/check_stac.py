"""Walks the STAC catalog served at --url the way STAC clients do, and checks it.

1. Every document (root catalog, each child collection, /stac/collections) validates against
   the official STAC 1.1.0 schemas and the schemas of the extensions it declares, loaded from
   the repository's copies (--schemas, tests/fixtures/schemas), offline. The render extension,
   whose schema is not kept there, is the only one allowed without a local schema.
2. The children are exactly the expected (published) dataset ids.
3. pystac reads the catalog and its collections; pystac-client opens it as a STAC API and lists
   the same collections.
4. The `zarr` asset opens with xarray using the asset's own `xarray:open_kwargs`; its shape,
   time axis and bounds agree with `proj:shape`, `cube:dimensions` and `proj:bbox`.

Usage: check_stac.py --url BASE --schemas DIR --expect ID[,ID...]
Prints a JSON summary on success; exits non-zero with a message otherwise.
"""

import argparse
import json
import pathlib
import sys
import urllib.request

import jsonschema
import numpy as np
import pandas as pd
import pystac
import pystac_client
import referencing
import referencing.jsonschema
import xarray as xr

STAC = "https://schemas.stacspec.org/v1.1.0"
RENDER = "https://stac-extensions.github.io/render/v2.0.0/schema.json"


def fail(msg):
    print(f"check_stac: {msg}", file=sys.stderr)
    sys.exit(1)


def load_schemas(root: pathlib.Path):
    """A registry of every local schema under the URLs documents and schemas refer to."""
    resources = {}
    spec = referencing.jsonschema.DRAFT7

    def add(url, path):
        contents = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(contents, default_specification=spec)
        resources[url] = resource
        if "$id" in contents:
            resources[contents["$id"].rstrip("#")] = resource

    for path in sorted((root / "stac-1.1.0").glob("*.json")):
        part = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}.get(
            path.name, "item-spec"
        )
        add(f"{STAC}/{part}/json-schema/{path.name}", path)
    for path in sorted((root / "geojson").glob("*.json")):
        add(f"https://geojson.org/schema/{path.name}", path)
    for name, version in [("datacube", "2.3.0"), ("projection", "2.0.0")]:
        add(
            f"https://stac-extensions.github.io/{name}/v{version}/schema.json",
            root / f"{name}-{version}" / "schema.json",
        )
    # The projection schema refers to PROJJSON's own schema for `proj:projjson`, which is not
    # kept locally. We never emit `proj:projjson`; a stand-in that accepts any object lets the rest of
    # the projection schema be checked offline.
    resources["https://proj.org/schemas/v0.7/projjson.schema.json"] = referencing.Resource.from_contents(
        {"type": "object"}, default_specification=spec)
    return referencing.Registry().with_resources(resources.items())


def errors(doc, registry, url):
    validator = jsonschema.Draft7Validator(registry.contents(url), registry=registry)
    return sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))


def validate(doc, registry, what):
    kind = doc.get("type")
    core = {
        "Catalog": f"{STAC}/catalog-spec/json-schema/catalog.json",
        "Collection": f"{STAC}/collection-spec/json-schema/collection.json",
    }.get(kind)
    if core is None:
        fail(f"{what}: unexpected type {kind!r}")
    schemas = [core]
    for ext in doc.get("stac_extensions", []):
        if ext in registry:
            schemas.append(ext)
        elif ext != RENDER:
            fail(f"{what}: extension {ext} has no local schema to validate against")
    for url in schemas:
        found = errors(doc, registry, url)
        if found:
            e = found[0]
            fail(f"{what} is invalid against {url}: {e.message} at {list(e.absolute_path)}")
    return schemas


def check_validator_rejects(col, registry):
    """The schemas in use do reject broken documents (the validation is not vacuous)."""
    core = f"{STAC}/collection-spec/json-schema/collection.json"
    datacube = "https://stac-extensions.github.io/datacube/v2.3.0/schema.json"
    projection = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
    broken = json.loads(json.dumps(col))
    del broken["extent"]
    if not errors(broken, registry, core):
        fail("the STAC collection schema accepts a collection without extent")
    broken = json.loads(json.dumps(col))
    broken["cube:dimensions"]["x"]["type"] = 42
    if not errors(broken, registry, datacube):
        fail("the datacube schema accepts a dimension whose type is a number")
    broken = json.loads(json.dumps(col))
    broken["assets"]["zarr"]["proj:shape"] = "tall"
    if not errors(broken, registry, projection):
        fail("the projection schema accepts proj:shape 'tall'")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            fail(f"GET {url}: {r.status}")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            fail(f"GET {url}: Content-Type {ctype!r}")
        return json.loads(r.read())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="the API's base URL")
    p.add_argument("--schemas", required=True)
    p.add_argument("--expect", required=True, help="comma-separated dataset ids")
    a = p.parse_args()
    registry = load_schemas(pathlib.Path(a.schemas))
    expected = sorted(filter(None, a.expect.split(",")))
    base = a.url.rstrip("/")

    # 1-2: the raw documents, validated.
    root = get(f"{base}/stac")
    validate(root, registry, "/stac")
    conformance = get(f"{base}/stac/conformance")["conformsTo"]
    if conformance != root["conformsTo"]:
        fail(f"/stac/conformance {conformance} differs from the landing page's conformsTo")
    if get(f"{base}/stac/catalog.json") != root:
        fail("/stac/catalog.json differs from /stac")
    children = [l["href"] for l in root["links"] if l["rel"] == "child"]
    for l in root["links"]:
        if not l["href"].startswith(("http://", "https://")):
            fail(f"relative link in the catalog: {l}")
    validated = {}
    for href in children:
        col = get(href)
        validated[col["id"]] = validate(col, registry, href)
        check_validator_rejects(col, registry)
        if col["assets"]["zarr"]["href"] != f"{base}/zarr/{col['id']}":
            fail(f"{href}: zarr asset href {col['assets']['zarr']['href']}")
    if sorted(validated) != expected:
        fail(f"children {sorted(validated)} != expected {expected}")
    listing = get(f"{base}/stac/collections")
    for col in listing["collections"]:
        validate(col, registry, f"/stac/collections ({col['id']})")
    if sorted(c["id"] for c in listing["collections"]) != expected:
        fail("/stac/collections lists other collections than the catalog's children")

    # 3: pystac and pystac-client.
    cat = pystac.Catalog.from_file(f"{base}/stac/catalog.json")
    cols = list(cat.get_children())
    if sorted(c.id for c in cols) != expected:
        fail(f"pystac children {[c.id for c in cols]}")
    client = pystac_client.Client.open(f"{base}/stac")
    if not client.conforms_to(pystac_client.conformance.ConformanceClasses.COLLECTIONS):
        fail("pystac-client does not see the collections conformance class")
    api_ids = sorted(c.id for c in client.get_collections())
    if api_ids != expected:
        fail(f"pystac-client collections {api_ids}")

    # 4: the data asset opens as described.
    opened = {}
    for c in cols:
        if not isinstance(c, pystac.Collection):
            fail(f"{c.id} is not read as a Collection")
        asset = c.assets["zarr"]
        kwargs = dict(asset.extra_fields["xarray:open_kwargs"])
        ds = xr.open_dataset(asset.href, **kwargs)
        (var,) = c.extra_fields["cube:variables"].keys()
        da = ds[var]
        if list(da.dims) != ["t", "y", "x"]:
            fail(f"{c.id}: dims {da.dims}")
        if list(da.shape[1:]) != asset.extra_fields["proj:shape"]:
            fail(f"{c.id}: shape {da.shape} vs proj:shape {asset.extra_fields['proj:shape']}")
        dims = c.extra_fields["cube:dimensions"]
        t0, t1 = (pd.Timestamp(v).tz_localize(None) for v in dims["t"]["extent"])
        if pd.Timestamp(ds.t.values[0]) != t0 or pd.Timestamp(ds.t.values[-1]) != t1:
            fail(f"{c.id}: t {ds.t.values[0]}..{ds.t.values[-1]} vs extent {t0}..{t1}")
        w, s, e, n = asset.extra_fields["proj:bbox"]
        dx, dy = float(abs(ds.x[1] - ds.x[0])), float(abs(ds.y[1] - ds.y[0]))
        got = [float(ds.x.min()) - dx / 2, float(ds.y.min()) - dy / 2,
               float(ds.x.max()) + dx / 2, float(ds.y.max()) + dy / 2]
        if not np.allclose(got, [w, s, e, n], atol=1e-6 * max(dx, 1e-9) + 1e-9):
            fail(f"{c.id}: pixel-edge bounds {got} vs proj:bbox {[w, s, e, n]}")
        if dims["x"]["extent"] != [w, e] or dims["y"]["extent"] != [s, n]:
            fail(f"{c.id}: cube:dimensions extents disagree with proj:bbox")
        opened[c.id] = {"shape": list(da.shape), "validated_with": validated[c.id]}
    print(json.dumps({"collections": opened}))


if __name__ == "__main__":
    main()
