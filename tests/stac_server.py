"""A real STAC API on loopback for the tests: landing page, item search, and the band files over HTTP.

Knobs: ``failures[path] = n`` answers the first n requests of a path with 503; ``delays[path] = s`` waits s
seconds before answering (for time-outs); ``missing`` paths answer 404.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

ASSETS = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B11": "swir16",
    "B12": "swir22",
}


class StacServer:
    """Serve items made from local band files (``{band: path}`` per item) at http://127.0.0.1:<port>/."""

    def __init__(self, items: dict[str, dict[str, Path]], properties: dict[str, Any] | None = None) -> None:
        self.files = {f"/files/{item}/{path.name}": path for item, bands in items.items() for path in bands.values()}
        self.items_spec, self.properties = items, properties or {}
        self.failures: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.missing: set[str] = set()
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StacServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def item(self, item_id: str, bands: dict[str, Path]) -> dict[str, Any]:
        with rasterio.open(next(iter(bands.values()))) as source:
            west, south, east, north = transform_bounds(source.crs, "EPSG:4326", *source.bounds)
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        assets = {
            ASSETS[band]: {"href": f"{self.url}/files/{item_id}/{path.name}", "type": "image/jp2"}
            for band, path in bands.items()
        }
        return {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": item_id,
            "collection": "sentinel-2-l2a",
            "bbox": [west, south, east, north],
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "datetime": "2017-02-16T10:21:01Z",
                "eo:cloud_cover": 12.5,
                "s2:processing_baseline": "02.04",
                **self.properties,
            },
            "assets": assets,
            "links": [],
        }

    def landing(self) -> dict[str, Any]:
        links = [
            {"rel": "self", "href": self.url + "/", "type": "application/json"},
            {"rel": "root", "href": self.url + "/", "type": "application/json"},
            {"rel": "search", "href": self.url + "/search", "type": "application/geo+json", "method": "GET"},
            {"rel": "search", "href": self.url + "/search", "type": "application/geo+json", "method": "POST"},
        ]
        return {
            "type": "Catalog",
            "id": "loopback",
            "stac_version": "1.0.0",
            "description": "test STAC API",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": links,
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output quiet
                pass

            def answer(self) -> None:
                path = self.path.split("?")[0]
                outer.requests.append(path)
                time.sleep(outer.delays.get(path, 0))
                if outer.failures.get(path, 0) > 0:
                    outer.failures[path] -= 1
                    self.send_error(503, "try again")
                elif path in outer.missing:
                    self.send_error(404, "not here")
                elif path in ("/", ""):
                    self.send_json(outer.landing())
                elif path == "/search":
                    features = [outer.item(item_id, bands) for item_id, bands in outer.items_spec.items()]
                    self.send_json({"type": "FeatureCollection", "features": features, "links": []})
                elif path in outer.files:
                    self.send_bytes(outer.files[path].read_bytes(), "image/jp2")
                else:
                    self.send_error(404, "unknown path")

            def send_json(self, content: dict[str, Any]) -> None:
                self.send_bytes(json.dumps(content).encode(), "application/json")

            def send_bytes(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.answer()

        return Handler
