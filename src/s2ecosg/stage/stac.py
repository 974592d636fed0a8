"""Scenes from a STAC API (pystac-client): search by footprint, dates and cloud cover; fetch assets with retries.

Asset names differ between providers (Earth Search: ``blue``, ``nir08``, ``scl``; Planetary Computer:
``B02``; CDSE: ``B02_10m``): ``data/stac_providers.csv`` maps band names to asset keys. The inventory only
searches (footprints come from the items); each stage job downloads the assets of its own scenes into a
shared cache (``imagery.stac.cache``), atomically, so parallel jobs never see a half-written file. Network
errors and HTTP 429/5xx are retried with exponential back-off, then reported in one line.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from s2ecosg.config import ImageryConfig, StacConfig
from s2ecosg.errors import InputError
from s2ecosg.io import atomic_path, package_csv
from s2ecosg.stage.scenes import Scene

LOG = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def asset_keys(provider: str) -> dict[str, str]:
    """Band (and ``SCL``) → asset key of a provider."""
    with package_csv("stac_providers.csv") as handle:
        keys = {row["band"]: row["asset"] for row in csv.DictReader(handle) if row["provider"] == provider}
    if not keys:
        raise InputError("imagery.stac.provider", f"unknown STAC provider {provider!r}")
    return keys


def with_retries(action: Any, what: str, retries: int, backoff: float) -> Any:
    """Run ``action()``; retry network errors and retryable HTTP statuses with exponential back-off."""
    for attempt in range(retries + 1):
        try:
            return action()
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUS:
                raise InputError(what, f"HTTP {error.code} {error.reason}") from None
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = str(getattr(error, "reason", error))
        except Exception as error:  # pystac-client wraps requests' errors in its own APIError
            if "Connection" not in type(error).__name__ and "APIError" not in type(error).__name__:
                raise
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if attempt < retries:
            delay = backoff * 2**attempt
            LOG.warning("%s: %s; retry %d/%d in %.1f s", what, reason, attempt + 1, retries, delay)
            time.sleep(delay)
    raise InputError(what, f"unreachable after {retries + 1} tries ({reason})")


def fetch(url: str, target: Path, settings: StacConfig) -> Path:
    """Download ``url`` to ``target`` (kept if already there), atomically, with retries."""
    if target.exists():
        return target

    def download() -> None:
        with atomic_path(target) as temporary, urllib.request.urlopen(url, timeout=settings.timeout) as response:
            with temporary.open("wb") as handle:
                while chunk := response.read(1 << 20):
                    handle.write(chunk)

    with_retries(download, url, settings.retries, settings.backoff)
    return target


def item_offset(properties: dict[str, Any]) -> int:
    """Radiometric offset of an item: −1000 from baseline 04.00 unless the provider already applied it."""
    baseline = str(properties.get("s2:processing_baseline", "00.00"))
    if properties.get("earthsearch:boa_offset_applied"):
        return 0
    return -1000 if baseline >= "04.00" else 0


def search(settings: StacConfig, imagery: ImageryConfig) -> list[Any]:
    """Items of the STAC search (``imagery.stac``: url, collection; footprint ``imagery.aoi``; dates; cloud)."""
    from pystac_client import Client  # 0.3 s to import: loaded where used

    stac = settings
    query = {"eo:cloud_cover": {"lte": imagery.max_cloud}} if imagery.max_cloud < 100 else None
    dates = f"{imagery.dates[0].isoformat()}/{imagery.dates[1].isoformat()}" if imagery.dates else None

    def run() -> list[Any]:
        client = Client.open(stac.url, timeout=stac.timeout)
        found = client.search(
            collections=[stac.collection], bbox=imagery.aoi, datetime=dates, query=query, max_items=stac.max_items
        )
        return list(found.items())

    return with_retries(run, stac.url, stac.retries, stac.backoff)


def item_scene(item: Any, bands: list[str], keys: dict[str, str]) -> dict[str, Any]:
    """Scene fields of a STAC item: band URLs, SCL URL, offsets, date, cloud cover, baseline and collection."""
    missing = [band for band in bands if keys.get(band) not in item.assets]
    if missing:
        raise InputError(item.self_href or item.id, f"item {item.id} has no asset for band {', '.join(missing)}")
    offset = item_offset(item.properties)
    scl = item.assets.get(keys.get("SCL", ""))
    return {
        "scene_id": item.id,
        "date": str(item.properties.get("datetime", ""))[:10],
        "bands": {band: [item.assets[keys[band]].href, 1] for band in bands},
        "offsets": dict.fromkeys(bands, offset),
        "scl": scl.href if scl is not None else None,
        "cloud": item.properties.get("eo:cloud_cover"),
        "baseline": str(item.properties.get("s2:processing_baseline") or ""),
        "collection": str(item.collection_id or ""),
    }


def localise(scene: Scene, settings: StacConfig) -> Scene:
    """The scene with every http(s) asset replaced by its copy in the cache (downloaded when missing)."""

    def local(url: str) -> str:
        if not url.startswith(("http://", "https://")):
            return url
        target = Path(settings.cache) / scene.scene_id / Path(url.split("?")[0]).name
        return str(fetch(url, target, settings))

    bands = {band: (local(path), index) for band, (path, index) in scene.bands.items()}
    return dataclasses.replace(scene, bands=bands, scl=local(scene.scl) if scene.scl else scene.scl)
