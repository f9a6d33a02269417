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


# The same formula for Redis scripts (Lua 5.1: the same doubles, the same libm calls), so a script
# that ranks by distance agrees with :func:`haversine_m`; it reads ``earth`` (pass EARTH_RADIUS_M).
HAVERSINE_LUA = """
local rad = math.pi / 180
local function haversine(lat1, lng1, lat2, lng2)
  local p1, p2 = lat1 * rad, lat2 * rad
  local dp, dl = p2 - p1, (lng2 - lng1) * rad
  local a = math.sin(dp / 2) ^ 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ^ 2
  return 2 * earth * math.asin(math.min(1.0, math.sqrt(a)))
end
"""


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


# -- the datum --------------------------------------------------------------------------------------
# The service stores and answers every coordinate in GCJ-02, the datum of the mini-program's map
# component (wx.getLocation({type: 'gcj02'})) and of Chinese map tiles (天地图 aside, AMap/Tencent).
# Raw GPS (WGS-84) differs from it by several hundred metres in Baotou; a client that sends WGS-84
# says so (``coord_type: "wgs84"``) and the API converts at the edge (:func:`wgs84_to_gcj02`).
GCJ02 = "gcj02"
WGS84 = "wgs84"
_A = 6378245.0  # Krasovsky 1940 semi-major axis
_EE = 0.00669342162296594323  # its eccentricity squared


def _outside_china(lat: float, lng: float) -> bool:
    return not (73.66 < lng < 135.05 and 3.86 < lat < 53.55)


def _offset(lat: float, lng: float) -> tuple[float, float]:
    x, y = lng - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlng += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlng += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlng += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlng = (dlng * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlat, dlng


def wgs84_to_gcj02(lat: float, lng: float) -> tuple[float, float]:
    """A WGS-84 (GPS) point in GCJ-02; unchanged outside China, where GCJ-02 is WGS-84."""
    if _outside_china(lat, lng):
        return lat, lng
    dlat, dlng = _offset(lat, lng)
    return lat + dlat, lng + dlng


def gcj02_to_wgs84(lat: float, lng: float) -> tuple[float, float]:
    """The inverse of :func:`wgs84_to_gcj02`, by fixed-point iteration (to well under a metre)."""
    if _outside_china(lat, lng):
        return lat, lng
    wlat, wlng = lat, lng
    for _ in range(30):
        glat, glng = wgs84_to_gcj02(wlat, wlng)
        dlat, dlng = glat - lat, glng - lng
        wlat, wlng = wlat - dlat, wlng - dlng
        if abs(dlat) < 1e-9 and abs(dlng) < 1e-9:
            break
    return wlat, wlng


def to_service_datum(lat: float, lng: float, coord_type: str | None) -> tuple[float, float]:
    """A point as a client sent it, in the service's datum (GCJ-02)."""
    return wgs84_to_gcj02(lat, lng) if coord_type == WGS84 else (lat, lng)
