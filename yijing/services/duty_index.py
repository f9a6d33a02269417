"""The Redis GEO index of on-duty volunteers: who is on duty, where, and how fresh.

This is the API other features use to find volunteers near a point (nearby dispatch, urgent
broadcasts)::

    from yijing.services import duty_index
    duty_index.nearest(lat, lng, radius_m=3000, limit=20, categories=["courier"])
    # → [(volunteer_id, distance_m), ...], nearest first, only fresh entries

Only on-duty volunteers are in the index (a search sorts every point inside its radius, see
docs/performance.md), each in three GEO sets so that a search sorts as few points as it can:

* ``{duty}:geo`` — everyone on duty;
* ``{duty}:geo:cat:<category>`` — per category, for a search filtered by one category;
* ``{duty}:geo:part:<id>`` — per partition of the city: the second node of the home
  jurisdiction's path (the district under the city), for "inside my jurisdiction" searches.

``{duty}:seen`` (sorted set, volunteer id → unix time of the last ping) drives freshness: a
search ignores entries older than ``DUTY_PING_WINDOW_SECONDS`` and :func:`evict_stale` (run
every minute by ``workers.duty.evict_stale``) removes them. ``{duty}:info`` (hash, id → JSON)
holds what filters and results need (category, home path, masked name, team), so a search is
one Lua script: one round trip, no database query. The script widens its radius step by step
(:data:`START_RADIUS_M`, doubling) so that it sorts about as many points as it returns, not every
point of the radius asked for: its cost stays flat as the number on duty grows. Every key shares
the ``{duty}`` hash tag, so the script and the MULTI blocks also work on Redis Cluster (all but the
desk's :func:`search_as_bearer`, which also reads the token's and the principal's cache entries, as
the feed's logged-in first page does: one Redis, or Sentinel).

The database (``volunteers.on_duty`` and the last synced location) is the source of truth; the
index can be rebuilt from it (``flask yijing rebuild-duty-index``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.commands.core import Script

from yijing.config import settings
from yijing.extensions import redis_client, redis_key
from yijing.models.volunteer import CATEGORY_LABELS
from yijing.services.auth import TOKEN_AND_PROFILE_LUA

TAG = "{duty}"
# Seeding and rebuilding write this many volunteers per round trip.
BATCH = 1000
# A search starts this close to the point and doubles its radius until it has found enough (or
# reached the radius asked for): GEOSEARCH sorts every point of the geohash boxes around the whole
# radius, so 3 km among 100,000 on duty cost ~0.9 ms of Redis time where 250 m → 500 m → 1 km cost
# 40 µs, and the work stays about ``limit`` points however dense the city gets (docs/performance.md).
START_RADIUS_M = 250

# The search itself, shared by the plain script and the bearer's (:data:`_BEARER_SEARCH_LUA`).
_SEARCH_FN = """
local function search(key, seen_key, info_key, lng, lat, radius, limit, min_seen, r, cats, prefixes)
  local nprefixes = #prefixes
  local function in_scope(path)
    if nprefixes == 0 then return true end
    if not path then return false end
    for i = 1, nprefixes do
      local p = prefixes[i]
      if string.sub(path, 1, #p) == p then return true end
    end
    return false
  end

  -- The info is JSON written by DutyEntry.info_json (compact, fixed keys): its category and path are
  -- matched as text and the whole entry is spliced into the answer as it is, since cjson.decode
  -- would cost more than the GEO search itself. Each round's hits start with the previous round's
  -- (nearest first, a wider radius or a larger COUNT only adds farther ones), so only the new ones
  -- are looked at: two commands per round (ZMSCORE, HMGET), not two per hit.
  local out, examined, fetch = {}, 0, limit
  while true do
    local hits = redis.call('GEOSEARCH', key, 'FROMLONLAT', lng, lat, 'BYRADIUS', r, 'm',
                            'ASC', 'COUNT', fetch, 'WITHDIST', 'WITHCOORD')
    for first = examined + 1, #hits, 1000 do
      local last = math.min(first + 999, #hits)
      local ids = {}
      for i = first, last do ids[#ids + 1] = hits[i][1] end
      local seen = redis.call('ZMSCORE', seen_key, unpack(ids))
      local infos = redis.call('HMGET', info_key, unpack(ids))
      for j = 1, #ids do
        local s, info = seen[j], infos[j]
        if s and tonumber(s) >= min_seen and info
            and (cats == nil or cats[string.match(info, '"c":"([^"]*)"')])
            and in_scope(string.match(info, '"p":"([^"]*)"')) then
          local hit = hits[first + j - 1]
          out[#out + 1] = '[' .. ids[j] .. ',' .. hit[2] .. ',' .. hit[3][1] .. ',' .. hit[3][2] .. ','
            .. s .. ',' .. info .. ']'
          if #out >= limit then return '[' .. table.concat(out, ',') .. ']' end
        end
      end
    end
    examined = #hits
    if #hits >= fetch then
      fetch = fetch * 4  -- more points inside r than were fetched: fetch more of them
    elseif r < radius then
      r = math.min(r * 2, radius)  -- every point inside r was seen, too few kept: widen
    else
      return '[' .. table.concat(out, ',') .. ']'
    end
  end
end

-- ARGV from pos: the number of categories, the categories; a table (set) or nil for any.
local function read_set(pos)
  local n = tonumber(ARGV[pos]); pos = pos + 1
  if n == 0 then return nil, pos end
  local set = {}
  for _ = 1, n do set[ARGV[pos]] = true; pos = pos + 1 end
  return set, pos
end
"""

_SEARCH_LUA = (
    _SEARCH_FN
    + """
local radius = tonumber(ARGV[3])
local cats, pos = read_set(7)
local nprefixes = tonumber(ARGV[pos]); pos = pos + 1
local prefixes = {}
for i = 1, nprefixes do prefixes[i] = ARGV[pos]; pos = pos + 1 end
return search(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], radius, tonumber(ARGV[4]), tonumber(ARGV[5]),
              math.min(tonumber(ARGV[6]), radius), cats, prefixes)
"""
)

# The desk's search as the bearer of a token, in one round trip (:func:`search_as_bearer`): the
# token's cache entry (KEYS[1]), the principal's (ARGV[1] .. uid), the subtree roots where the
# principal's grants give one of the roles in ARGV (without nested duplicates, as
# ``policies.scope_paths``), the GEO set those roots allow (a common partition's, else the one
# category's, else everyone's), and the search in it. It answers what it read and used; the caller
# decides (yijing.services.duty). Without the token or the principal entry it stops early.
_BEARER_SEARCH_LUA = (
    _SEARCH_FN
    + TOKEN_AND_PROFILE_LUA
    + """
local radius = tonumber(ARGV[7])
local cats, pos = read_set(11)
local roles = read_set(pos) or {}
local found = {}
for _, grant in ipairs(cjson.decode(profile)['grants']) do
  if roles[grant['role']] and type(grant['path']) == 'string' then found[#found + 1] = grant['path'] end
end
table.sort(found, function(a, b) return #a < #b end)
local paths = {}
for _, p in ipairs(found) do
  local nested = false
  for _, kept in ipairs(paths) do
    if string.sub(p, 1, #kept) == kept then nested = true; break end
  end
  if not nested then paths[#paths + 1] = p end
end
if #paths == 0 then return {token, profile} end
local partition
for i, p in ipairs(paths) do
  local part = string.match(p, '^/[^/]*/([^/]+)/') or ''
  if i == 1 then partition = part elseif part ~= partition then partition = '' end
end
local key = ARGV[2]
if partition ~= '' then key = ARGV[3] .. partition elseif ARGV[4] ~= '' then key = ARGV[4] end
local rows = search(key, KEYS[2], KEYS[3], ARGV[5], ARGV[6], radius, tonumber(ARGV[8]), tonumber(ARGV[9]),
                    math.min(tonumber(ARGV[10]), radius), cats, paths)
return {token, profile, table.concat(paths, '\\n'), key, rows}
"""
)

# Remove one member if (and only if) its last ping is older than the cutoff; atomic against a ping.
_EVICT_LUA = """
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class DutyEntry:
    """What the index keeps about an on-duty volunteer besides their position."""

    volunteer_id: int
    user_id: int
    category: str
    path: str  # the home jurisdiction's path, e.g. "/1/2/5/9/"
    jurisdiction_id: int
    name_masked: str
    team_id: int | None = None

    def info_json(self) -> str:
        return json.dumps(
            {
                "c": self.category,
                "p": self.path,
                "u": self.user_id,
                "j": self.jurisdiction_id,
                "n": self.name_masked,
                "t": self.team_id,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """One on-duty volunteer found by :func:`search`."""

    volunteer_id: int
    distance_m: float
    lat: float
    lng: float
    last_seen_at: datetime
    category: str
    path: str
    user_id: int
    jurisdiction_id: int
    name_masked: str
    team_id: int | None


# -- keys -------------------------------------------------------------------------------------


def key_all() -> str:
    return redis_key(TAG, "geo")


def key_category(category: str) -> str:
    return redis_key(TAG, "geo", "cat", category)


def key_partition(partition: str) -> str:
    return redis_key(TAG, "geo", "part", partition)


def key_seen() -> str:
    return redis_key(TAG, "seen")


def key_info() -> str:
    return redis_key(TAG, "info")


def key_built() -> str:
    return redis_key(TAG, "built")


def partition_of(path: str) -> str | None:
    """The second node of a path (``/1/2/5/`` → ``"2"``): the district below the city."""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[1] else None


def _geo_keys(category: str | None, path: str | None) -> list[str]:
    keys = [key_all()]
    if category:
        keys.append(key_category(category))
    partition = partition_of(path) if path else None
    if partition:
        keys.append(key_partition(partition))
    return keys


def window_seconds() -> int:
    return settings().duty_ping_window_seconds


@functools.cache
def _script(client: Redis, source: str) -> Script:
    return client.register_script(source)


# -- writing ----------------------------------------------------------------------------------


def add(entry: DutyEntry, lat: float, lng: float, *, seen_at: float | None = None) -> None:
    """Put a volunteer in the index (or move them) and mark them seen now (or at ``seen_at``)."""
    add_many([(entry, lat, lng, seen_at)])


def add_many(
    items: Iterable[tuple[DutyEntry, float, float, float | None]], *, keep_newer: bool = False
) -> int:
    """Add many volunteers, :data:`BATCH` per round trip (one command per key); returns how many.

    With ``keep_newer`` (rebuilding from the database) a volunteer already in the index keeps
    their position and a fresher ping time: a ping that arrived meanwhile is never undone.
    """
    client = redis_client()
    count = 0
    batch: list[tuple[DutyEntry, float, float, float | None]] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            count += _write(client, batch, keep_newer)
            batch = []
    if batch:
        count += _write(client, batch, keep_newer)
    return count


def _write(client: Redis, batch: list[tuple[DutyEntry, float, float, float | None]], keep_newer: bool) -> int:
    now = time.time()
    geo: dict[str, list[object]] = {}
    seen: dict[str, float] = {}
    info: dict[str, str] = {}
    keys_for: dict[tuple[str, str], list[str]] = {}
    for entry, lat, lng, seen_at in batch:
        member = str(entry.volunteer_id)
        keys = keys_for.get((entry.category, entry.path))
        if keys is None:
            keys = keys_for[(entry.category, entry.path)] = _geo_keys(entry.category, entry.path)
        for key in keys:
            geo.setdefault(key, []).extend((lng, lat, member))
        seen[member] = now if seen_at is None else seen_at
        info[member] = entry.info_json()
    pipe = client.pipeline(transaction=True)
    for key, values in geo.items():
        pipe.geoadd(key, values, nx=keep_newer)
    pipe.zadd(key_seen(), seen, gt=keep_newer)
    if keep_newer:
        for member, value in info.items():
            pipe.hsetnx(key_info(), member, value)
    else:
        pipe.hset(key_info(), mapping=info)
    pipe.execute()
    return len(batch)


def remove(volunteer_id: int) -> bool:
    """Take a volunteer out of the index; False if they were not in it."""
    client = redis_client()
    member = str(volunteer_id)
    raw = client.hget(key_info(), member)
    category = path = None
    if raw is not None:
        data = json.loads(raw)
        category, path = data.get("c"), data.get("p")
    pipe = client.pipeline(transaction=True)
    for key in _geo_keys(category, path):
        pipe.zrem(key, member)
    pipe.zrem(key_seen(), member)
    pipe.hdel(key_info(), member)
    results = pipe.execute()
    return raw is not None or any(results)


def evict_stale(*, now: float | None = None, window: int | None = None) -> list[int]:
    """Remove every volunteer whose last ping is older than the window; returns their ids."""
    client = redis_client()
    cutoff = (now or time.time()) - (window if window is not None else window_seconds())
    stale = client.zrangebyscore(key_seen(), "-inf", f"({cutoff}")
    if not stale:
        return []
    script = _script(client, _EVICT_LUA)
    evicted: list[int] = []
    for start in range(0, len(stale), BATCH):
        members = [m.decode() for m in stale[start : start + BATCH]]
        infos = client.hmget(key_info(), members)
        pipe = client.pipeline(transaction=False)
        for member, raw in zip(members, infos, strict=True):
            data = json.loads(raw) if raw else {}
            keys = [key_seen(), key_info(), *_geo_keys(data.get("c"), data.get("p"))]
            script(keys=keys, args=[member, cutoff], client=pipe)
        for member, removed in zip(members, pipe.execute(), strict=True):
            if removed:
                evicted.append(int(member))
    return evicted


def members() -> set[int]:
    """Every volunteer id in the index (fresh or not)."""
    return {int(m) for m in redis_client().zrange(key_seen(), 0, -1)}


def last_seen(volunteer_id: int) -> datetime | None:
    score = redis_client().zscore(key_seen(), str(volunteer_id))
    return None if score is None else datetime.fromtimestamp(score, UTC)


def mark_built() -> None:
    redis_client().set(key_built(), str(int(time.time())))


def is_built() -> bool:
    """False when the index was never built here or Redis lost it (the marker is gone)."""
    return bool(redis_client().exists(key_built()))


# -- reading ----------------------------------------------------------------------------------

#: One hit as the search scripts answer it: id, distance (m), lng, lat, last ping (unix time), and
#: the info JSON (:meth:`DutyEntry.info_json`) decoded.
Row = tuple[int, float, float, float, float, dict[str, Any]]


def search_key(categories: Sequence[str], partition: str | None) -> str:
    """The GEO set a search sorts: the partition's, else the one category's, else everyone's."""
    if partition:
        return key_partition(partition)
    if len(categories) == 1:
        return key_category(categories[0])
    return key_all()


def _search_args(
    lat: float, lng: float, radius_m: float, limit: int, categories: Sequence[str], window: int | None
) -> list[object]:
    min_seen = time.time() - (window if window is not None else window_seconds())
    return [lng, lat, radius_m, max(1, limit), min_seen, START_RADIUS_M, len(categories), *categories]


def search_rows(
    lat: float,
    lng: float,
    radius_m: float,
    limit: int,
    *,
    categories: Sequence[str] | None = None,
    within_paths: Sequence[str] | None = None,
    partition: str | None = None,
    window: int | None = None,
) -> list[Row]:
    """:func:`search`'s hits as the script answers them (see :data:`Row`)."""
    client = redis_client()
    categories = sorted(set(categories or ()))
    paths = list(within_paths or ())
    args = [*_search_args(lat, lng, radius_m, limit, categories, window), len(paths), *paths]
    keys = [search_key(categories, partition), key_seen(), key_info()]
    # One JSON string back: parsing it beats parsing ~7 RESP elements per hit in Python.
    return json.loads(_script(client, _SEARCH_LUA)(keys=keys, args=args, client=client))


def search(
    lat: float,
    lng: float,
    radius_m: float,
    limit: int,
    *,
    categories: Sequence[str] | None = None,
    within_paths: Sequence[str] | None = None,
    partition: str | None = None,
    window: int | None = None,
) -> list[Hit]:
    """Fresh on-duty volunteers within ``radius_m`` of a point, nearest first.

    ``categories`` keeps those categories; ``within_paths`` keeps volunteers whose home lies in
    one of those subtrees; ``partition`` searches only that partition's set (see
    :func:`partition_of`), which must contain every path in ``within_paths``.
    """
    rows = search_rows(
        lat,
        lng,
        radius_m,
        limit,
        categories=categories,
        within_paths=within_paths,
        partition=partition,
        window=window,
    )
    return [
        Hit(
            volunteer_id=member,
            distance_m=round(dist, 1),
            lat=hit_lat,
            lng=hit_lng,
            last_seen_at=datetime.fromtimestamp(seen, UTC),
            category=data["c"],
            path=data["p"],
            user_id=data["u"],
            jurisdiction_id=data["j"],
            name_masked=data["n"],
            team_id=data.get("t"),
        )
        for member, dist, hit_lng, hit_lat, seen, data in rows
    ]


@dataclass(frozen=True, slots=True)
class BearerSearch:
    """What :func:`search_as_bearer`'s script read and did: the token's and the principal's cache
    entries as stored (None: not found), and, when it searched, the scope paths and the GEO set it
    searched and the hits."""

    token: bytes | None
    profile: bytes | None
    paths: list[str] | None = None
    key: str | None = None
    rows: list[Row] | None = None


def search_as_bearer(
    token_key: str,
    principal_prefix: str,
    roles: Sequence[str],
    lat: float,
    lng: float,
    radius_m: float,
    limit: int,
    *,
    categories: Sequence[str] | None = None,
    window: int | None = None,
) -> BearerSearch:
    """The token's cache entry (``token_key``), its principal's (``principal_prefix`` + user id) and
    :func:`search` within the subtrees where the principal holds one of ``roles``, in one round trip.

    Nothing here decides whether the token is good or what its bearer may see: the caller
    authenticates from the entries returned and uses the hits only if the principal it decoded
    grants exactly :attr:`BearerSearch.paths` and :func:`search_key` of those is
    :attr:`BearerSearch.key`.
    """
    client = redis_client()
    categories = sorted(set(categories or ()))
    args: list[object] = [
        principal_prefix,
        key_all(),
        key_partition(""),
        key_category(categories[0]) if len(categories) == 1 else "",
        *_search_args(lat, lng, radius_m, limit, categories, window),
        len(roles),
        *roles,
    ]
    values = _script(client, _BEARER_SEARCH_LUA)(
        keys=[token_key, key_seen(), key_info()], args=args, client=client
    )
    token, profile = [*values, None, None][:2]
    if len(values) < 5:
        return BearerSearch(token=token or None, profile=profile or None)
    return BearerSearch(
        token=token,
        profile=profile,
        paths=values[2].decode().split("\n"),
        key=values[3].decode(),
        rows=json.loads(values[4]),
    )


# -- the desk's answer, rendered --------------------------------------------------------------------

# What ``json.dumps(..., ensure_ascii=False)`` (the app's JSON provider) writes for a string.
_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]


@functools.cache
def _category_json(category: str) -> str:
    label = CATEGORY_LABELS.get(category, category)
    return f'"category":{_json_str(category)},"category_label":{_json_str(label)}'


def _int_or_null(value: object) -> str:
    return "null" if value is None else str(int(value))  # type: ignore[call-overload]


def item_json(row: Row) -> str:
    """One hit as the desk's ``OnDutyItemSchema`` dumps it and the app's JSON provider writes it:
    keys sorted, compact, floats as ``repr`` (as marshmallow's ``Float`` then ``json`` do), the ping
    time as ``isoformat`` of the UTC datetime. ``tests/desk/test_on_duty_rendered.py`` holds it equal."""
    member, dist, lng, lat, seen, data = row
    name = data["n"]
    return (
        f'{{{_category_json(data["c"])},"distance_m":{float(round(dist, 1))!r},'
        f'"jurisdiction_id":{_int_or_null(data["j"])},'
        f'"last_seen_at":"{datetime.fromtimestamp(seen, UTC).isoformat()}",'
        f'"lat":{float(lat)!r},"lng":{float(lng)!r},'
        f'"name_masked":{"null" if name is None else _json_str(name)},'
        f'"team_id":{_int_or_null(data.get("t"))},"volunteer_id":{int(member)}}}'
    )


def nearest(
    lat: float, lng: float, radius_m: float, limit: int, categories: Sequence[str] | None = None
) -> list[tuple[int, float]]:
    """``[(volunteer_id, distance_m), ...]`` of fresh on-duty volunteers, nearest first (as
    :func:`search` has them, without building its hits)."""
    return [
        (member, round(dist, 1))
        for member, dist, *_ in search_rows(lat, lng, radius_m, limit, categories=categories)
    ]
