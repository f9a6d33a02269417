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
the ``{duty}`` hash tag, so the script and the MULTI blocks also work on Redis Cluster.

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

from redis import Redis
from redis.commands.core import Script

from yijing.config import settings
from yijing.extensions import redis_client, redis_key

TAG = "{duty}"
# Seeding and rebuilding write this many volunteers per round trip.
BATCH = 1000
# A search starts this close to the point and doubles its radius until it has found enough (or
# reached the radius asked for): GEOSEARCH sorts every point of the geohash boxes around the whole
# radius, so 3 km among 100,000 on duty cost ~0.9 ms of Redis time where 250 m → 500 m → 1 km cost
# 40 µs, and the work stays about ``limit`` points however dense the city gets (docs/performance.md).
START_RADIUS_M = 250

_SEARCH_LUA = """
local lng, lat, radius = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local min_seen = tonumber(ARGV[5])
local r = math.min(tonumber(ARGV[6]), radius)
local pos = 7
local ncats = tonumber(ARGV[pos]); pos = pos + 1
local cats = nil
if ncats > 0 then
  cats = {}
  for _ = 1, ncats do cats[ARGV[pos]] = true; pos = pos + 1 end
end
local nprefixes = tonumber(ARGV[pos]); pos = pos + 1
local prefixes = {}
for i = 1, nprefixes do prefixes[i] = ARGV[pos]; pos = pos + 1 end

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
  local hits = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', lng, lat, 'BYRADIUS', r, 'm',
                          'ASC', 'COUNT', fetch, 'WITHDIST', 'WITHCOORD')
  for first = examined + 1, #hits, 1000 do
    local last = math.min(first + 999, #hits)
    local ids = {}
    for i = first, last do ids[#ids + 1] = hits[i][1] end
    local seen = redis.call('ZMSCORE', KEYS[2], unpack(ids))
    local infos = redis.call('HMGET', KEYS[3], unpack(ids))
    for j = 1, #ids do
      local s, info = seen[j], infos[j]
      if s and tonumber(s) >= min_seen and info and (cats == nil or cats[string.match(info, '"c":"([^"]*)"')])
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
"""

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
    client = redis_client()
    categories = sorted(set(categories or ()))
    if partition:
        key = key_partition(partition)
    elif len(categories) == 1:
        key = key_category(categories[0])
    else:
        key = key_all()
    min_seen = time.time() - (window if window is not None else window_seconds())
    paths = list(within_paths or ())
    args: list[object] = [lng, lat, radius_m, max(1, limit), min_seen, START_RADIUS_M]
    args += [len(categories), *categories, len(paths), *paths]
    # One JSON string back: parsing it beats parsing ~7 RESP elements per hit in Python.
    rows = json.loads(
        _script(client, _SEARCH_LUA)(keys=[key, key_seen(), key_info()], args=args, client=client)
    )
    hits = []
    for member, dist, hit_lng, hit_lat, seen, data in rows:
        hits.append(
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
        )
    return hits


def nearest(
    lat: float, lng: float, radius_m: float, limit: int, categories: Sequence[str] | None = None
) -> list[tuple[int, float]]:
    """``[(volunteer_id, distance_m), ...]`` of fresh on-duty volunteers, nearest first."""
    return [(h.volunteer_id, h.distance_m) for h in search(lat, lng, radius_m, limit, categories=categories)]
