"""Summarises `wrk --latency` output as JSON: requests/s, p50 and p99 in ms, non-2xx responses
and socket errors. Imported by bench/load.py; `wrk ... | python bench/wrk_summary.py` prints it."""

from __future__ import annotations

import json
import re
import sys


def summary(text: str, digits: int = 3) -> dict:
    def ms(label: str):
        m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return None
        v, u = float(m.group(1)), m.group(2)
        return round(v / 1000 if u == "us" else v * 1000 if u == "s" else v, digits)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests_per_s": float(rps.group(1)) if rps else None, "p50_ms": ms("50%"),
            "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0}


if __name__ == "__main__":
    print(json.dumps(summary(sys.stdin.read())))
