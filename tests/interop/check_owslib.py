"""OGC API - Processes through OWSLib's client: list, describe and execute.

Usage: check_owslib.py OGCAPI_URL DATASET FEATURES

OGCAPI_URL is the instance's `/ogcapi` root; DATASET a published daily dataset holding July
2025; FEATURES a GeoJSON FeatureCollection file. Lists and describes the processes, executes
`echo` and `zonal-statistics` synchronously, and `zonal-statistics` asynchronously (the job
polled at its Location until it finishes, then its results fetched). Prints one JSON document:
{"processes": [ids], "zonal_inputs": [names], "echo": result, "sync": result,
 "async_status": status, "async": result}.
"""

import json
import sys
import time

import requests
from owslib.ogcapi.processes import Processes


def main():
    url, dataset, features_path = sys.argv[1:4]
    with open(features_path) as f:
        features = json.load(f)
    api = Processes(url)
    out = {"processes": [p["id"] for p in api.processes()]}
    described = api.process("zonal-statistics")
    out["zonal_inputs"] = sorted(described["inputs"])
    out["echo"] = api.execute("echo", {"message": {"from": "owslib"}})
    inputs = {
        "dataset_id": dataset,
        "features": features,
        "datetime": "2025-07-01/2025-07-31",
        "statistics": ["mean", "max"],
    }
    out["sync"] = api.execute("zonal-statistics", inputs)
    accepted = api.execute("zonal-statistics", inputs, async_=True)
    location = api.response_headers["Location"]
    assert accepted["jobID"] in location, (accepted, location)
    status = accepted
    for _ in range(600):
        status = requests.get(location, timeout=10).json()
        if status["status"] in ("successful", "failed", "dismissed"):
            break
        time.sleep(0.1)
    out["async_status"] = status["status"]
    results = [l["href"] for l in status["links"] if l["rel"].endswith("/results")]
    out["async"] = requests.get(results[0], timeout=10).json() if results else None
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
