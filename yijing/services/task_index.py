"""The Redis index of open tasks a volunteer may sign up to, beside the database.

``GET /api/v1/tasks`` asks it for the candidates near a volunteer instead of scanning the live
tasks in PostgreSQL: one Lua script (one round trip) returns the tasks within
``TASK_NEARBY_RADIUS_M`` of each of the volunteer's places and those of their home's
jurisdiction and its ancestors, already filtered by category, skills and end time. The exact
distances, the sort and the page stay in Python (:mod:`yijing.services.dispatch`), so the
answer is the same as the database's.

What is indexed: every task that is published or under way, open for sign-up and not full.
Each in three kinds of keys, all under the ``{tasks}`` hash tag (the script and the MULTI
blocks also work on Redis Cluster):

* ``{tasks}:geo`` — GEO set of the tasks' places;
* ``{tasks}:jur:<jurisdiction id>`` — set of the tasks of one jurisdiction (the ancestors' tasks
  are seen by everyone below them, wherever they are);
* ``{tasks}:info`` — hash, task id → JSON: jurisdiction, exact place (as text, so the distance
  is computed from the database's floats), start (µs since the epoch), end, categories, skills;
* ``{tasks}:card`` — hash, task id → the task's card in the list, already rendered
  (:func:`card_json`: what ``TaskCardSchema`` dumps, without the reader's ``distance_m`` and
  ``my_status``, which :func:`with_reader` adds per request), handed back by the search with
  its candidates, so a page costs no database read or schema dump.

Keeping it in line: every change of a task that can add it to the list, take it out or change
its card (publishing, a series' occurrences, every slot taken or given back, any edit,
cancelling, closing) calls :func:`refresh` with the task's id; the
entries are read from the database in the same transaction just before it commits and written
to Redis just after (a rollback writes nothing). Taking the last slot calls :func:`unlist`
instead, which reads nothing back: the task is full under the row's lock, so it only goes. A
write that fails (Redis down) is logged and the database stays the truth: the list falls back
to the database whenever the index is not marked built (``{tasks}:built`` is gone after a flush
or never set), and :func:`repair` — run every minute by ``workers.tasks.repair_task_index`` —
rebuilds a lost index and corrects any entry or card that drifted (a missed write, two writes of
one task crossing, a jurisdiction renamed under its tasks). ``flask yijing rebuild-task-index``
does the same by hand.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from yijing.extensions import db, redis_client, redis_key
from yijing.geo import EARTH_RADIUS_M, HAVERSINE_LUA
from yijing.models import DispatchMode, Jurisdiction, Task, TaskStatus
from yijing.models.jurisdiction import LEVEL_LABELS
from yijing.models.task import KIND_LABELS

log = logging.getLogger(__name__)

TAG = "{tasks}"
BATCH = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Redis measures on a slightly different sphere and quantises places to about 0.6 m: search a
# little wider and let the exact check in Python decide.
RADIUS_SLACK = 1.002
RADIUS_SLACK_M = 5.0
_SESSION_KEY = "yijing_task_index"
LIVE = (TaskStatus.PUBLISHED, TaskStatus.IN_PROGRESS)

# The walk from here starts this close and doubles its radius (as yijing.services.duty_index does):
# GEOSEARCH reads every point of the geohash boxes around the radius it is given, and each task it
# returns costs the script an HMGET and a JSON decode, so a search should look at about a page.
START_RADIUS_M = 500

_SEARCH_LUA = (
    """
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
-- The arguments in one JSON object (search() encodes and sends one string, not twenty).
local a = cjson.decode(ARGV[1])
local now, radius = a.now, a.radius
local origins = {}
for o, place in ipairs(a.origins) do
  -- lat, lng as numbers; lng, lat as given (GEOSEARCH's arguments)
  origins[o] = {tonumber(place[2]), tonumber(place[1]), place[1], place[2]}
end
local category = a.category
local skills = {}
for _, s in ipairs(a.skills) do skills[s] = true end
-- The page: yijing.geo.haversine_m's formula in the same doubles, the exact radius, the cursor.
local exact_radius, earth, keep = a.exact_radius, a.earth, a.keep
local after = a.after  -- nil: the first page
if after == cjson.null then after = nil end
local slack, slack_m, start_radius = a.slack, a.slack_m, a.start_radius
"""
    + HAVERSINE_LUA
    + """
local here = origins[1]
local margin = here and 0.2 or 0  -- distances are shown rounded to 0.1 m
local seen, listed = {}, {}
local out, keys = {}, {}

-- Each task once: open, fitting, in the area (of the home's jurisdictions, or within the exact
-- radius of an origin), at or after the cursor; its key is the distance from here, else its start.
local function consider(ids)
  for first = 1, #ids, 1000 do
    local chunk = {}
    for i = first, math.min(first + 999, #ids) do chunk[#chunk + 1] = ids[i] end
    local infos = redis.call('HMGET', KEYS[2], unpack(chunk))
    for i, raw in ipairs(infos) do
      if raw then
        local t = cjson.decode(raw)
        local ok = t.e > now
        if ok and #t.c > 0 then
          ok = false
          for _, c in ipairs(t.c) do if c == category then ok = true; break end end
        end
        if ok then
          for _, s in ipairs(t.k) do if not skills[s] then ok = false; break end end
        end
        local lat, lng = tonumber(t.la), tonumber(t.ln)
        if ok and not listed[chunk[i]] then
          ok = false
          for _, o in ipairs(origins) do
            if haversine(o[1], o[2], lat, lng) <= exact_radius then ok = true; break end
          end
        end
        local key
        if ok then
          if here then key = haversine(here[1], here[2], lat, lng) else key = tonumber(t.s) end
          ok = after == nil or key >= after - margin
        end
        if ok then
          out[#out + 1] = {chunk[i], t.j, t.la, t.ln, t.s}
          keys[#out] = key
        end
      end
    end
  end
end

-- The keep-th smallest key so far (nil while fewer were kept), sorted again only when more were.
local sorted_for = -1
local last_key
local function kth()
  if #keys < keep then return nil end
  if sorted_for ~= #keys then
    local sorted = {}
    for i = 1, #keys do sorted[i] = keys[i] end
    table.sort(sorted)
    last_key, sorted_for = sorted[keep], #keys
  end
  return last_key
end

-- The tasks of the home and its ancestors: in the area wherever they are.
local ids = {}
for i = 5, #KEYS do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    listed[id] = true
    if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
  end
end
consider(ids)

if here then
  -- Nearest to here first, the radius doubling and the count growing until every task that can
  -- be on the page has been looked at: every one nearer than a page's worth, whichever origin's
  -- circle it is in (any such task is that near here too). Redis's metres differ from ours by
  -- less than the slack: a task Redis puts within "reach" of here is within reach * slack +
  -- slack_m by our measure, and one nearer than d by ours is nearer than d * slack + slack_m by
  -- Redis's.
  local function bound(key) return (key + margin) * slack + slack_m end
  local r = start_radius
  if after then r = r + bound(after) end  -- the page starts at the cursor
  local known = kth()  -- already a page from the home's jurisdictions: look no farther than it
  r = math.min(r, radius, known and bound(known) + 1 or radius)
  local fetch, certain = 4 * keep + #ids, false  -- the home's tasks near here take places in it
  while true do
    local hits = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', here[3], here[4], 'BYRADIUS', r, 'm',
                            'ASC', 'COUNT', fetch, 'WITHDIST')
    local new = {}
    for _, hit in ipairs(hits) do
      local id = hit[1]
      if not seen[id] then
        seen[id] = true
        -- before the cursor by any measure: not read at all
        if not (after and tonumber(hit[2]) * slack + slack_m < after - margin) then new[#new + 1] = id end
      end
    end
    consider(new)
    local full = #hits >= fetch
    -- every task nearer than this (by Redis's measure) has been looked at
    local reach = full and tonumber(hits[#hits][2]) or r
    local last = kth()
    if last and reach > bound(last) then certain = true; break end
    if full then
      fetch = fetch * 4  -- more tasks inside r than were fetched: fetch more of them
    elseif r < radius then
      -- every task inside r was seen, the page not certain: widen, no farther than the page needs
      r = math.min(radius, r * 2, last and bound(last) + 1 or radius)
    else
      break  -- here's whole circle seen
    end
  end
  if not certain then
    -- Fewer than a page near here: the other origins' circles, whole.
    for o = 2, #origins do
      local new = {}
      for _, id in ipairs(redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', origins[o][3], origins[o][4],
                                     'BYRADIUS', radius, 'm')) do
        if not seen[id] then seen[id] = true; new[#new + 1] = id end
      end
      consider(new)
    end
  end
end
if #out == 0 then return '[]' end
if #out > keep then
  -- Only what can be on the page: the keep smallest keys, and any tied with the last of them
  -- (within the 0.1 m the list rounds distances to), for Python's exact sort to choose from.
  local limit = kth() + margin
  local kept = {}
  for i = 1, #out do if keys[i] <= limit then kept[#kept + 1] = out[i] end end
  out = kept
end
-- One string back: the candidates as JSON (parsing it beats parsing five RESP elements per task
-- in Python), then each one's rendered card on a line of its own (JSON has no raw newline), an
-- empty line where there is none: the page needs no HMGET of its own.
local reply = {cjson.encode(out)}
for first = 1, #out, 1000 do
  local chunk = {}
  for i = first, math.min(first + 999, #out) do chunk[#chunk + 1] = out[i][1] end
  local cards = redis.call('HMGET', KEYS[4], unpack(chunk))
  for i = 1, #chunk do reply[#reply + 1] = cards[i] or '' end
end
return table.concat(reply, '\\n')
"""
)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index keeps about one open task."""

    task_id: int
    jurisdiction_id: int
    lat: float
    lng: float
    starts_at: datetime
    ends_at: datetime
    categories: tuple[str, ...]
    skills: tuple[str, ...]
    card: str

    def info_json(self) -> str:
        return json.dumps(
            {
                "j": self.jurisdiction_id,
                "la": repr(self.lat),
                "ln": repr(self.lng),
                "s": str(micros(self.starts_at)),
                "e": self.ends_at.timestamp(),
                "c": list(self.categories),
                "k": list(self.skills),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


class Hit(NamedTuple):
    """A candidate found by :func:`search`: open, not full, not over, fits the volunteer; with
    its rendered card (:func:`card_json`; None when the index has none)."""

    id: int
    jurisdiction_id: int
    lat: float
    lng: float
    starts_at: datetime
    card: str | None


@dataclass(frozen=True, slots=True)
class RepairResult:
    written: int
    removed: int


def micros(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# -- keys ----------------------------------------------------------------------------------------


def key_geo() -> str:
    return redis_key(TAG, "geo")


def key_info() -> str:
    return redis_key(TAG, "info")


def key_jurisdiction(jurisdiction_id: int) -> str:
    return redis_key(TAG, "jur", jurisdiction_id)


def key_card() -> str:
    return redis_key(TAG, "card")


def key_built() -> str:
    return redis_key(TAG, "built")


@functools.cache
def _script(client: Redis, source: str) -> Script:
    return client.register_script(source)


# -- what belongs in it ----------------------------------------------------------------------------

_COLUMNS = (
    Task.id,
    Task.jurisdiction_id,
    Task.lat,
    Task.lng,
    Task.starts_at,
    Task.ends_at,
    Task.categories,
    Task.skills,
    Task.kind,
    Task.title,
    Task.address,
    Task.slots,
    Task.filled,
    Task.points,
    Task.series_id,
    Jurisdiction.name.label("jurisdiction_name"),
    Jurisdiction.level.label("jurisdiction_level"),
)


def _select_listed():  # type: ignore[no-untyped-def]
    return select(*_COLUMNS).join(Jurisdiction, Jurisdiction.id == Task.jurisdiction_id).where(*_listed())


def _listed():  # type: ignore[no-untyped-def]
    """The condition of a task the index holds (the end time is checked when reading)."""
    return (
        Task.dispatch_mode == DispatchMode.OPEN,
        Task.status.in_(LIVE),
        Task.filled < Task.slots,
    )


def _entry(row: object) -> Entry:
    return Entry(
        task_id=row.id,  # type: ignore[attr-defined]
        jurisdiction_id=row.jurisdiction_id,  # type: ignore[attr-defined]
        lat=float(row.lat),  # type: ignore[attr-defined]
        lng=float(row.lng),  # type: ignore[attr-defined]
        starts_at=row.starts_at,  # type: ignore[attr-defined]
        ends_at=row.ends_at,  # type: ignore[attr-defined]
        categories=tuple(row.categories or ()),  # type: ignore[attr-defined]
        skills=tuple(row.skills or ()),  # type: ignore[attr-defined]
        card=card_json(row, row.jurisdiction_id, row.jurisdiction_name, row.jurisdiction_level),  # type: ignore[attr-defined]
    )


# -- the rendered card ------------------------------------------------------------------------------


def card_json(task: object, jurisdiction_id: int, jurisdiction_name: str, jurisdiction_level: str) -> str:
    """The task's card as ``TaskCardSchema`` dumps it, without ``distance_m`` and ``my_status``
    (the reader's part): compact JSON with sorted keys, as the app's JSON provider writes it.
    ``task`` is a Task or a row with the card's columns. ``tests/miniprogram_api/test_task_cards.py``
    holds it equal to the schema's dump."""
    t: Any = task
    level = str(jurisdiction_level)
    return json.dumps(
        {
            "address": t.address,
            "categories": list(t.categories) if t.categories is not None else None,
            "ends_at": t.ends_at.isoformat(),
            "filled": t.filled,
            "id": t.id,
            "jurisdiction": {
                "id": jurisdiction_id,
                "level": level,
                "level_label": LEVEL_LABELS.get(level, level),
                "name": jurisdiction_name,
            },
            "kind": t.kind,
            "kind_label": KIND_LABELS.get(t.kind, t.kind),
            "lat": float(t.lat),
            "lng": float(t.lng),
            "points": t.points,
            "remaining": max(0, t.slots - t.filled),
            "series_id": t.series_id,
            "skills": list(t.skills) if t.skills is not None else None,
            "slots": t.slots,
            "starts_at": t.starts_at.isoformat(),
            "title": t.title,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )


def with_reader(card: str, distance_m: float | None, my_status: str | None) -> str:
    """A card from :func:`card_json` with the reader's two keys put in their sorted places
    (``distance_m`` before ``ends_at``, ``my_status`` before ``points``: a key's quote cannot
    occur unescaped inside a string, so the first ``,"ends_at":`` is the key)."""
    ends = card.index(',"ends_at":')
    points = card.index(',"points":', ends)
    distance = "null" if distance_m is None else float.__repr__(distance_m)  # as json.dumps writes it
    status = "null" if my_status is None else json.dumps(my_status)
    return f'{card[:ends]},"distance_m":{distance}{card[ends:points]},"my_status":{status}{card[points:]}'


# -- writing ---------------------------------------------------------------------------------------


def put_many(entries: Iterable[Entry]) -> int:
    """Add or move tasks, :data:`BATCH` per round trip; returns how many."""
    client = redis_client()
    count = 0
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == BATCH:
            count += _put(client, batch)
            batch = []
    if batch:
        count += _put(client, batch)
    return count


def _old_jurisdictions(client: Redis, members: list[str]) -> list[int | None]:
    return [None if raw is None else int(json.loads(raw)["j"]) for raw in client.hmget(key_info(), members)]


def _put(client: Redis, batch: list[Entry]) -> int:
    members = [str(e.task_id) for e in batch]
    old = _old_jurisdictions(client, members)
    pipe = client.pipeline(transaction=True)
    geo: list[object] = []
    by_jurisdiction: dict[int, list[str]] = {}
    for entry, member, was in zip(batch, members, old, strict=True):
        if was is not None and was != entry.jurisdiction_id:
            pipe.srem(key_jurisdiction(was), member)
        geo.extend((entry.lng, entry.lat, member))
        by_jurisdiction.setdefault(entry.jurisdiction_id, []).append(member)
    pipe.geoadd(key_geo(), geo)
    for jurisdiction_id, ids in by_jurisdiction.items():
        pipe.sadd(key_jurisdiction(jurisdiction_id), *ids)
    pipe.hset(key_info(), mapping={m: e.info_json() for m, e in zip(members, batch, strict=True)})
    pipe.hset(key_card(), mapping={m: e.card for m, e in zip(members, batch, strict=True)})
    pipe.execute()
    return len(batch)


def remove_many(task_ids: Iterable[int]) -> int:
    """Take tasks out; returns how many were in it."""
    client = redis_client()
    ids = [str(t) for t in task_ids]
    removed = 0
    for start in range(0, len(ids), BATCH):
        members = ids[start : start + BATCH]
        old = _old_jurisdictions(client, members)
        pipe = client.pipeline(transaction=True)
        pipe.zrem(key_geo(), *members)
        for member, was in zip(members, old, strict=True):
            if was is not None:
                pipe.srem(key_jurisdiction(was), member)
        pipe.hdel(key_card(), *members)
        pipe.hdel(key_info(), *members)
        removed += pipe.execute()[-1]
    return removed


def mark_built() -> None:
    redis_client().set(key_built(), datetime.now(UTC).isoformat())


def is_built() -> bool:
    """False when the index was never built here or Redis lost it (the marker is gone)."""
    return bool(redis_client().exists(key_built()))


# -- in line with each transaction -------------------------------------------------------------------


def refresh(task_id: int) -> None:
    """Bring this task's entry in line with the database once the current transaction commits."""
    _pending()["ids"].add(task_id)


def refresh_many(task_ids: Iterable[int]) -> None:
    _pending()["ids"].update(task_ids)


def unlist(task_id: int, jurisdiction_id: int) -> None:
    """Take this task off the list once the current transaction commits, without reading it back:
    for a caller that knows it no longer belongs (its last slot taken, under the row's lock)."""
    _pending()["unlisted"][task_id] = jurisdiction_id


def _pending() -> dict[str, Any]:
    return db.session.info.setdefault(_SESSION_KEY, {"ids": set(), "unlisted": {}})


@event.listens_for(Session, "before_commit")
def _read_entries(session: Session) -> None:
    state = session.info.get(_SESSION_KEY)
    if not state or not state["ids"] or "entries" in state:
        return
    ids = sorted(state["ids"])
    session.flush()
    found = {row.id: _entry(row) for row in session.execute(_select_listed().where(Task.id.in_(ids)))}
    state["entries"] = (list(found.values()), [tid for tid in ids if tid not in found])


@event.listens_for(Session, "after_commit")
def _write_entries(session: Session) -> None:
    state = session.info.pop(_SESSION_KEY, None)
    if not state:
        return
    entries, gone = state.get("entries", ([], []))
    # A task also refreshed was read back: that answer stands.
    unlisted = {tid: jid for tid, jid in state["unlisted"].items() if tid not in state["ids"]}
    try:
        if entries:
            put_many(entries)
        if gone:
            remove_many(gone)
        if unlisted:
            _remove_known(unlisted)
    except RedisError as exc:
        log.warning(
            "task index write failed; the repair job corrects it",
            extra={"tasks": [e.task_id for e in entries] + gone + list(unlisted), "error": str(exc)},
        )


@event.listens_for(Session, "after_rollback")
def _drop_entries(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)


def _remove_known(jurisdiction_of: dict[int, int]) -> None:
    """Take tasks out whose jurisdiction is known: one round trip, no read of their entries."""
    members = [str(t) for t in jurisdiction_of]
    pipe = redis_client().pipeline(transaction=True)
    pipe.zrem(key_geo(), *members)
    for task_id, jurisdiction_id in jurisdiction_of.items():
        pipe.srem(key_jurisdiction(jurisdiction_id), str(task_id))
    pipe.hdel(key_info(), *members)
    pipe.hdel(key_card(), *members)
    pipe.execute()


# -- rebuilding and repairing ---------------------------------------------------------------------


def _listed_rows() -> Iterator[Entry]:
    stmt = _select_listed().execution_options(yield_per=BATCH)
    for row in db.session.execute(stmt):
        yield _entry(row)


def repair() -> RepairResult:
    """Make the index match the database: write every entry that is missing or differs, drop
    every task that no longer belongs, and mark the index built. Safe to run on a live system."""
    client = redis_client()
    current = {k.decode(): v.decode() for k, v in client.hgetall(key_info()).items()}
    cards = {k.decode(): v.decode() for k, v in client.hgetall(key_card()).items()}
    wanted: set[str] = set()
    stale: list[Entry] = []
    for entry in _listed_rows():
        member = str(entry.task_id)
        wanted.add(member)
        if current.get(member) != entry.info_json() or cards.get(member) != entry.card:
            stale.append(entry)
    db.session.rollback()
    written = put_many(stale)
    extra = [int(m) for m in current if m not in wanted]
    # Members of the GEO set or cards without info (a write cut in half) go too.
    extra += [int(m) for m in (x.decode() for x in client.zrange(key_geo(), 0, -1)) if m not in wanted]
    extra += [int(m) for m in cards if m not in wanted]
    removed = remove_many(sorted(set(extra))) if extra else 0
    mark_built()
    return RepairResult(written=written, removed=removed)


# -- reading ---------------------------------------------------------------------------------------


def search(
    origins: Sequence[tuple[float, float]],
    radius_m: float,
    jurisdiction_ids: Sequence[int],
    category: str,
    skills: Sequence[str],
    now: datetime,
    *,
    keep: int,
    after: float | None = None,
) -> list[Hit] | None:
    """Open, not full tasks not yet over within ``radius_m`` of an origin or in one of the
    jurisdictions, whose categories and skills fit; None when the index is not built (read
    the database instead). Redis errors propagate.

    Only what can be on one page comes back, with each one's card, so the work in Python does
    not grow with the number of tasks around: the ``keep`` nearest to the first origin (by start
    when there is no origin),
    with any tied with the last of them, among those at or after ``after`` (the cursor's distance
    in metres, or its start in µs since the epoch when there is no origin). The script computes
    the distances with :func:`yijing.geo.haversine_m`'s formula in the same doubles; the caller
    still checks and sorts what it gets exactly, so ``keep`` should leave it a few spare.

    Nor does the work in Redis grow with them when there is an origin: the script walks out from
    the first one (GEOSEARCH nearest first, from :data:`START_RADIUS_M`, doubling) and stops once
    every task that can be on the page has been looked at; only when fewer than a page lie around
    the first origin does it read the other origins' circles whole, as it used to read them all.
    The home's jurisdictions' tasks are read whole, wherever they are.
    """
    client = redis_client()
    # Floats as JSON writes them (repr: the same doubles in Lua); the places as text, as
    # GEOSEARCH gets them.
    args = json.dumps(
        {
            "now": now.timestamp(),
            "radius": radius_m * RADIUS_SLACK + RADIUS_SLACK_M,
            "origins": [[str(lng), str(lat)] for lat, lng in origins],
            "category": category,
            "skills": list(skills),
            "exact_radius": radius_m,
            "earth": EARTH_RADIUS_M,
            "keep": max(1, keep),
            "after": after,
            "slack": RADIUS_SLACK,
            "slack_m": RADIUS_SLACK_M,
            "start_radius": START_RADIUS_M,
        },
        separators=(",", ":"),
    )
    tag = redis_key(TAG)  # the keys below, without reading the prefix once per key
    keys = [f"{tag}:geo", f"{tag}:info", f"{tag}:built", f"{tag}:card"]
    keys += [f"{tag}:jur:{j}" for j in jurisdiction_ids]
    raw = _script(client, _SEARCH_LUA)(keys=keys, args=[args], client=client)
    if raw is None:
        return None
    found, *cards = raw.decode().split("\n")
    return [
        Hit(int(tid), int(jid), float(lat), float(lng), from_micros(int(start)), card or None)
        for (tid, jid, lat, lng, start), card in zip(json.loads(found), cards, strict=True)
    ]


def cards(task_ids: Sequence[int]) -> list[str | None]:
    """The rendered cards of these tasks (:func:`card_json`), None where the index has none (a
    full task, or one changed since it was found). Redis errors propagate."""
    if not task_ids:
        return []
    return [None if raw is None else raw.decode() for raw in redis_client().hmget(key_card(), task_ids)]
