"""The receiver's query API, as the demo uses it (docs/api.md), with the read token.

Raw reads are paged by time: a page of `limit` points oldest first, the next page starting at the
last timestamp seen, skipping the points at that timestamp already taken, until a page brings
nothing new. This never depends on the receiver's page cap, and keeps repeated timestamps
(duplicates are what the summary looks for), as long as fewer points than a page share one
timestamp in one series.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from demo.errors import DemoError

PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    metric: str
    unit: str
    area: str
    medium: str


@dataclass(frozen=True, slots=True)
class Point:
    ts_ms: int
    value: float
    quality: int


class ReceiverApi:
    def __init__(self, url: str, read_token: str) -> None:
        self.url = url.rstrip("/")
        self._token = read_token

    def get(self, path: str, **params: object) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(  # noqa: S310 - the demo's own loopback receiver
            f"{self.url}{path}{'?' + query if query else ''}",
            headers={"Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise DemoError(f"the receiver answered {exc.code} to GET {path}") from exc
        except (OSError, ValueError) as exc:
            raise DemoError(f"cannot query the receiver at {self.url}: {exc}") from exc

    def device(self, device_id: str) -> dict[str, Any] | None:
        for d in self.get("/v1/devices")["devices"]:
            if d["device_id"] == device_id:
                return dict(d)
        return None

    def series(self, device_id: str) -> list[Series]:
        return [
            Series(s["id"], s["metric"], s["unit"], s["area"], s["medium"])
            for s in self.get("/v1/series", device=device_id)["series"]
        ]

    def count(self, series_id: int, from_ms: int, to_ms: int) -> int:
        """Readings of a series in [from_ms, to_ms), counted by the receiver."""
        body = self.get(
            f"/v1/series/{series_id}/readings",
            from_ms=from_ms,
            to_ms=to_ms,
            bucket_ms=to_ms - from_ms,
            agg="count",
        )
        return sum(int(p["count"]) for p in body["points"])

    def counts_by_area(
        self, device_id: str, groups: Mapping[str, str], from_ms: int, to_ms: int
    ) -> dict[str, int]:
        """Readings of the device's series, summed per group of their `area` tag."""
        out: dict[str, int] = {}
        for s in self.series(device_id):
            group = groups.get(s.area, "other")
            out[group] = out.get(group, 0) + self.count(s.id, from_ms, to_ms)
        return out

    def readings(self, series_id: int, from_ms: int, to_ms: int) -> list[Point]:
        return [
            Point(int(p["ts_ms"]), float(p["value"]), int(p["quality"]))
            for p in self._paged(
                lambda start: self.get(
                    f"/v1/series/{series_id}/readings",
                    from_ms=start,
                    to_ms=to_ms,
                    limit=PAGE,
                )["points"],
                from_ms,
            )
        ]

    def events(self, device_id: str, kind: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        return self._paged(
            lambda start: self.get(
                "/v1/events", device=device_id, kind=kind, from_ms=start, to_ms=to_ms, limit=PAGE
            )["events"],
            from_ms,
        )

    @staticmethod
    def _paged(fetch: Any, from_ms: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor, taken_at_cursor = from_ms, 0
        while True:
            page = [dict(p) for p in fetch(cursor)]
            new = page[taken_at_cursor:] if page and page[0]["ts_ms"] == cursor else page
            if not new:
                return out
            out += new
            last = new[-1]["ts_ms"]
            at_last = sum(1 for p in page if p["ts_ms"] == last)
            taken_at_cursor = at_last if last != cursor else taken_at_cursor + len(new)
            cursor = last
