"""Geopoints, distances and shapes of Koncorde's geofencing keywords.

Accepted geopoints (filters and documents alike): `{lat, lon}`, `{latLon: [lat, lon]}`,
`{latLon: {lat, lon}}`, `{latLon: "lat, lon"}` (also `lat_lon`), `[lat, lon]`, `"lat, lon"` and
geohash strings. Distances are strings such as `"10km"`, `"1.5 mi"`, `"3 258,55 ft"`.
Distances on the sphere use the ellipsoidal (WGS 84) Andoyer-Lambert formula, as Boost.Geometry
does for Koncorde.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .values import is_number, parse_float

_GEOHASH = re.compile(r"[0-9a-z]{4,}")
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_CAMEL = {"lat_lon": "latLon", "top_left": "topLeft", "bottom_right": "bottomRight"}


def camel_case(obj: dict[str, Any]) -> dict[str, Any]:
    """The snake_case spellings Koncorde accepts, renamed to camelCase."""
    return {_CAMEL.get(key, key): value for key, value in obj.items()}


def decode_geohash(text: str) -> tuple[float, float]:
    """Centre of a geohash cell. Like Koncorde, a character outside the alphabet counts as 0."""
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    even = True
    for char in text:
        index = max(_BASE32.find(char), 0)
        for shift in range(4, -1, -1):
            bit = (index >> shift) & 1
            if even:
                mid = (lon_lo + lon_hi) / 2
                lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
            else:
                mid = (lat_lo + lat_hi) / 2
                lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
            even = not even
    return (lat_lo + lat_hi) / 2, (lon_lo + lon_hi) / 2


def _coordinate(lat: Any, lon: Any) -> tuple[float, float] | None:
    lat_n, lon_n = parse_float(lat), parse_float(lon)
    if math.isnan(lat_n) or math.isnan(lon_n):
        return None
    return lat_n, lon_n


def _from_string(text: str) -> tuple[float, float] | None:
    parts = text.split(",")
    if len(parts) == 2:
        return _coordinate(parts[0], parts[1])
    if _GEOHASH.fullmatch(text):
        return decode_geohash(text)
    return None


def convert_geopoint(point: Any) -> tuple[float, float] | None:
    """(lat, lon) from any accepted geopoint format, or None."""
    if not point or is_number(point) or point is True:
        return None
    if isinstance(point, str):
        return _from_string(point)
    if isinstance(point, list):
        return _coordinate(point[0], point[1]) if len(point) == 2 else None
    if not isinstance(point, dict):
        return None
    obj = camel_case(point)
    if "lat" in obj and "lon" in obj:
        return _coordinate(obj["lat"], obj["lon"])
    if "latLon" in obj:
        inner = obj["latLon"]
        if isinstance(inner, list):
            return _coordinate(inner[0], inner[1]) if len(inner) == 2 else None
        if isinstance(inner, dict) and "lat" in inner and "lon" in inner:
            return _coordinate(inner["lat"], inner["lon"])
        if isinstance(inner, str):
            return _from_string(inner)
    return None


# Length units, in metres, as Koncorde's unit converter names them (plus metre/kilometre/foot).
_UNITS = {
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0,
    "kilometre": 1000.0, "kilometres": 1000.0,
    "hm": 100.0, "dam": 10.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "nm": 1e-9,
    "mi": 1609.34, "mile": 1609.34, "miles": 1609.34,
    "yd": 0.9144, "yard": 0.9144, "yards": 0.9144,
    "ft": 0.3048, "feet": 0.3048, "foot": 0.3048,
    "in": 0.0254, "inch": 0.0254, "inches": 0.0254,
}
_DISTANCE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+) ?([a-z]+)$")


def convert_distance(text: str) -> float:
    """Metres in a distance string; ValueError if it cannot be read."""
    cleaned = re.sub(r"[-\s]", "", text).replace(",", ".").lower()
    match = _DISTANCE.match(cleaned)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f'unable to parse distance value "{text}"')
    return float(match.group(1)) * _UNITS[match.group(2)]


# WGS 84
_A = 6378137.0
_F = 1 / 298.257223563


def distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres between two points on the WGS 84 ellipsoid (Andoyer-Lambert, first order)."""
    if lat1 == lat2 and lon1 == lon2:
        return 0.0
    rad = math.pi / 180
    phi1, phi2 = lat1 * rad, lat2 * rad
    dlon = (lon2 - lon1) * rad
    sin_phi1, cos_phi1 = math.sin(phi1), math.cos(phi1)
    sin_phi2, cos_phi2 = math.sin(phi2), math.cos(phi2)
    cos_d = sin_phi1 * sin_phi2 + cos_phi1 * cos_phi2 * math.cos(dlon)
    cos_d = max(-1.0, min(1.0, cos_d))
    d = math.acos(cos_d)
    sin_d = math.sin(d)
    k = (sin_phi1 - sin_phi2) ** 2
    l_ = (sin_phi1 + sin_phi2) ** 2
    one_minus = 1 - cos_d
    one_plus = 1 + cos_d
    h = (d + 3 * sin_d) / one_minus if one_minus else 0.0
    g = (d - 3 * sin_d) / one_plus if one_plus else 0.0
    correction = -(_F / 4) * (h * k + g * l_)
    return _A * (d + correction)


@dataclass(frozen=True)
class Shape:
    """A geofencing shape with its bounding box (a cheap first test)."""

    kind: str  # box, circle, annulus, polygon
    params: tuple[Any, ...]
    south: float
    west: float
    north: float
    east: float

    def contains(self, lat: float, lon: float) -> bool:
        if not (self.south <= lat <= self.north and self.west <= lon <= self.east):
            return False
        kind = self.kind
        if kind == "box":
            return True
        if kind == "circle":
            clat, clon, radius = self.params
            return distance(clat, clon, lat, lon) <= radius
        if kind == "annulus":
            clat, clon, inner, outer = self.params
            dist = distance(clat, clon, lat, lon)
            return inner <= dist <= outer
        return _in_polygon(self.params, lat, lon)


def box(top: float, left: float, bottom: float, right: float) -> Shape:
    return Shape("box", (top, left, bottom, right), bottom, left, top, right)


def _circle_bounds(lat: float, lon: float, radius: float) -> tuple[float, float, float, float]:
    # Generous: a degree of latitude is never shorter than 110 km; longitude shrinks with cos(lat).
    dlat = radius / 110_000 * 1.01 + 1e-9
    cos_lat = math.cos(math.radians(min(89.999, abs(lat) + dlat)))
    dlon = radius / (111_000 * cos_lat) * 1.01 + 1e-9 if cos_lat > 0 else 360.0
    if abs(lat) + dlat >= 89.0 or dlon >= 180:
        return -90.0, -math.inf, 90.0, math.inf
    return lat - dlat, lon - dlon, lat + dlat, lon + dlon


def circle(lat: float, lon: float, radius: float) -> Shape:
    return Shape("circle", (lat, lon, radius), *_circle_bounds(lat, lon, radius))


def annulus(lat: float, lon: float, inner: float, outer: float) -> Shape:
    return Shape("annulus", (lat, lon, inner, outer), *_circle_bounds(lat, lon, outer))


def polygon(points: list[tuple[float, float]]) -> Shape:
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    return Shape("polygon", tuple(points), min(lats), min(lons), max(lats), max(lons))


def _in_polygon(points: tuple[tuple[float, float], ...], lat: float, lon: float) -> bool:
    """Point in (automatically closed) polygon, edges included, in plane lat/lon coordinates."""
    inside = False
    count = len(points)
    for i in range(count):
        lat1, lon1 = points[i]
        lat2, lon2 = points[(i + 1) % count]
        # on the edge?
        cross = (lon2 - lon1) * (lat - lat1) - (lat2 - lat1) * (lon - lon1)
        if abs(cross) <= 1e-12 and min(lon1, lon2) <= lon <= max(lon1, lon2) \
                and min(lat1, lat2) <= lat <= max(lat1, lat2):
            return True
        if (lat1 > lat) != (lat2 > lat):
            at = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < at:
                inside = not inside
    return inside


class GeoIndex:
    """Shapes of one field bucketed in a grid of 1-degree cells, so a point tests only the shapes
    whose bounding box covers its cell. Shapes spanning many cells are kept in a list apart."""

    MAX_CELLS = 64

    __slots__ = ("cells", "items", "large")

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}  # key -> item (an object with .key and .cond.shape)
        self.cells: dict[tuple[int, int], list[Any]] = {}
        self.large: list[Any] = []

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _span(shape: Shape) -> tuple[range, range] | None:
        if not all(math.isfinite(v) for v in (shape.south, shape.west, shape.north, shape.east)):
            return None
        lats = range(math.floor(shape.south), math.floor(shape.north) + 1)
        lons = range(math.floor(shape.west), math.floor(shape.east) + 1)
        if len(lats) * len(lons) > GeoIndex.MAX_CELLS:
            return None
        return lats, lons

    def add(self, item: Any) -> None:
        self.items[item.key] = item
        span = self._span(item.cond.shape)
        if span is None:
            self.large.append(item)
            return
        for lat in span[0]:
            for lon in span[1]:
                self.cells.setdefault((lat, lon), []).append(item)

    def remove(self, item: Any) -> None:
        del self.items[item.key]
        span = self._span(item.cond.shape)
        if span is None:
            self.large.remove(item)
            return
        for lat in span[0]:
            for lon in span[1]:
                bucket = self.cells[(lat, lon)]
                bucket.remove(item)
                if not bucket:
                    del self.cells[(lat, lon)]

    def query(self, lat: float, lon: float, out: list[Any]) -> None:
        """Append every item whose shape contains the point."""
        if self.cells and math.isfinite(lat) and math.isfinite(lon):
            for item in self.cells.get((math.floor(lat), math.floor(lon)), ()):
                if item.cond.shape.contains(lat, lon):
                    out.append(item)
        for item in self.large:
            if item.cond.shape.contains(lat, lon):
                out.append(item)
