"""Distances on the earth's surface, good to a few metres at a city's scale."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_M / 180


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lng: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of a square that contains the circle: a cheap,
    indexable pre-filter before the exact distance."""
    dlat = radius_m / METRES_PER_DEGREE_LAT
    cos_lat = max(math.cos(math.radians(lat)), 0.01)
    dlng = radius_m / (METRES_PER_DEGREE_LAT * cos_lat)
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


def _to_xy(lat: float, lng: float, lat0: float) -> tuple[float, float]:
    """Local equirectangular projection around ``lat0`` (metres)."""
    return (
        math.radians(lng) * EARTH_RADIUS_M * math.cos(math.radians(lat0)),
        math.radians(lat) * EARTH_RADIUS_M,
    )


def distance_to_route_m(lat: float, lng: float, route: Sequence[Sequence[float]]) -> float | None:
    """Shortest distance from a point to a polyline ``[[lat, lng], ...]`` (None without a route).

    Segments are a few kilometres at most, so a local flat projection is accurate enough.
    """
    points = [(float(p[0]), float(p[1])) for p in route or ()]
    if not points:
        return None
    if len(points) == 1:
        return haversine_m(lat, lng, *points[0])
    px, py = _to_xy(lat, lng, lat)
    best = math.inf
    for (alat, alng), (blat, blng) in itertools.pairwise(points):
        ax, ay = _to_xy(alat, alng, lat)
        bx, by = _to_xy(blat, blng, lat)
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
        best = min(best, math.hypot(px - (ax + t * dx), py - (ay + t * dy)))
    return best
