"""A CHC-like file server for the latency benchmark: serves the three CHIRPS-layout COGs
(tests/fixtures/make_chirps_cogs.py)
cyclically for any day under the CHC URL layout, honours HEAD and single byte ranges (206), and
adds a fixed latency to every response, like a distant upstream.

    python bench/chc_mock.py --port 9100 --latency-ms 50 --data bench/data/chirps/source
"""

import argparse
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = re.compile(r"/daily/final/rnl/cogs/(\d{4})/chirps-v3\.0\.rnl\.(\d{4})\.(\d{2})\.(\d{2})\.cog$")


def make_handler(files, latency):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _file(self):
            m = PATTERN.search(self.path)
            if not m:
                return None
            day = int(m.group(4))
            return files[(day - 1) % len(files)]

        def _send(self, head):
            time.sleep(latency)
            body = self._file()
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            size = len(body)
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, b = rng[6:].split("-")
                a, b = int(a), min(int(b), size - 1)
                part = body[a : b + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if not head:
                    self.wfile.write(part)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_HEAD(self):
            self._send(True)

        def do_GET(self):
            self._send(False)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--data", required=True)
    a = p.parse_args()
    files = []
    for d in (1, 2, 3):
        with open(os.path.join(a.data, f"chirps-v3.0.rnl.2024.01.{d:02}.cog"), "rb") as f:
            files.append(f.read())
    ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(files, a.latency_ms / 1000)).serve_forever()


if __name__ == "__main__":
    main()
