"""Build ``data/baotou_jurisdictions.json``, the Baotou jurisdiction tree used as demo data.

The city, its 9 districts/banners/county (旗县区) and their administrative codes are real, and so are
the streets/townships (街道/镇/苏木) named under each district (a subset, 2–4 per district). The
communities/villages (社区/村/嘎查) and grids under them are plausible demo names, not an
authoritative list.

Coordinates: district centres are the approximate real seats of government. Every other centre is
placed deterministically around its parent (streets 2–4.5 km from the district centre, communities
0.6–1.4 km from their street, grids 120–280 m from their community), with bearings and distances
derived from a hash of the node key, so the output is byte-for-byte stable. They are demo positions:
a township such as 美岱召镇 really lies tens of km from its banner seat.

Usage::

    python -m yijing.demo.build_baotou           # (re)write the JSON
    python -m yijing.demo.build_baotou --check   # exit 1 if the committed JSON is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "data" / "baotou_jurisdictions.json"

CITY = {"code": "150200", "name": "包头市", "centre": (40.657, 109.840)}

# code -> (name, (lat, lng) of the seat, [(street/township, [communities/villages])])
DISTRICTS: dict[str, tuple[str, tuple[float, float], list[tuple[str, list[str]]]]] = {
    "150202": (
        "东河区",
        (40.576, 110.044),
        [
            ("西脑包街道", ["西脑包社区", "东源社区", "工业路社区"]),
            ("南门外街道", ["南门外社区", "南圪洞社区", "草市社区"]),
            ("和平路街道", ["和平路社区", "胜利社区"]),
            ("沙尔沁镇", ["沙尔沁村", "五犋牛窑村", "大克气村"]),
        ],
    ),
    "150203": (
        "昆都仑区",
        (40.661, 109.822),
        [
            ("少先路街道", ["少先路社区", "胜利路社区", "团结社区"]),
            ("沼潭街道", ["沼潭社区", "凯旋社区", "园林社区"]),
            ("鞍山道街道", ["鞍山道社区", "友谊社区"]),
            ("卜尔汉图镇", ["卜尔汉图村", "新光村", "毛其来村"]),
        ],
    ),
    "150204": (
        "青山区",
        (40.643, 109.901),
        [
            ("先锋道街道", ["先锋道社区", "文化路社区", "民主路社区"]),
            ("幸福路街道", ["幸福路社区", "青年路社区"]),
            ("富强路街道", ["富强路社区", "迎宾社区", "青福社区"]),
            ("兴胜镇", ["兴胜村", "西壕口村", "石门村"]),
        ],
    ),
    "150205": (
        "石拐区",
        (40.672, 110.273),
        [
            ("石拐街道", ["石拐社区", "白狐沟社区"]),
            ("大发街道", ["大发社区", "新发社区"]),
            ("五当召镇", ["五当召村", "阿善沟村", "后营子村"]),
        ],
    ),
    "150206": (
        "白云鄂博矿区",
        (41.770, 109.970),
        [
            ("通阳道街道", ["通阳道社区", "宝山社区", "白云社区"]),
            ("矿山路街道", ["矿山路社区", "东矿社区"]),
        ],
    ),
    "150207": (
        "九原区",
        (40.606, 109.967),
        [
            ("沙河街道", ["沙河社区", "新建社区", "九原社区"]),
            ("赛汗街道", ["赛汗社区", "建华社区"]),
            ("萨如拉街道", ["萨如拉社区", "景观社区"]),
            ("麻池镇", ["麻池村", "西河楞村", "召湾村"]),
        ],
    ),
    "150221": (
        "土默特右旗",
        (40.569, 110.524),
        [
            ("萨拉齐镇", ["北街社区", "西街社区", "东街社区"]),
            ("美岱召镇", ["美岱召村", "东老藏营村", "西湾村"]),
            ("双龙镇", ["双龙村", "把什村"]),
            ("沟门镇", ["沟门村", "新营子村"]),
        ],
    ),
    "150222": (
        "固阳县",
        (41.034, 110.060),
        [
            ("金山镇", ["东街社区", "西街社区", "金山村"]),
            ("西斗铺镇", ["西斗铺村", "大英图村"]),
            ("银号镇", ["银号村", "兴顺村"]),
            ("怀朔镇", ["怀朔村", "红泥井村"]),
        ],
    ),
    "150223": (
        "达尔罕茂明安联合旗",
        (41.698, 110.433),
        [
            ("百灵庙镇", ["艾不盖社区", "百灵庙社区", "团结社区"]),
            ("希拉穆仁镇", ["希拉穆仁嘎查", "昭河嘎查"]),
            ("石宝镇", ["石宝村", "新宝力格村"]),
            ("达尔罕苏木", ["巴音宝力格嘎查", "达尔罕嘎查"]),
        ],
    ),
}

GRID_NAMES = ("第一网格", "第二网格")

# (min km, max km) from the parent's centre, per level
RINGS = {"street": (2.0, 4.5), "community": (0.6, 1.4), "grid": (0.12, 0.28)}

KM_PER_DEG_LAT = 111.32


def _unit(key: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) derived from ``key``."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _place(parent: tuple[float, float], key: str, level: str, index: int, count: int) -> tuple[float, float]:
    """Centre of the ``index``-th of ``count`` children of ``parent``: spread around it, jittered."""
    lo, hi = RINGS[level]
    start = _unit(key.rsplit("-", 1)[0], "start") * 360.0  # per-parent rotation
    jitter = (_unit(key, "bearing") - 0.5) * (180.0 / count)  # stays inside the child's sector
    bearing = math.radians(start + index * 360.0 / count + jitter)
    dist_km = lo + (hi - lo) * _unit(key, "distance")
    lat, lng = parent
    dlat = dist_km * math.cos(bearing) / KM_PER_DEG_LAT
    dlng = dist_km * math.sin(bearing) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lng + dlng, 6)


def _node(key, parent_key, name, level, code, centre) -> dict:
    return {
        "key": key,
        "parent_key": parent_key,
        "name": name,
        "level": level,
        "code": code,
        "lat": centre[0],
        "lng": centre[1],
    }


def build() -> list[dict]:
    """The tree as a list of import-format nodes, parents before children."""
    city_key = CITY["code"]
    nodes = [_node(city_key, None, CITY["name"], "city", CITY["code"], CITY["centre"])]
    for code, (name, centre, streets) in DISTRICTS.items():
        nodes.append(_node(code, city_key, name, "district", code, centre))
        for s, (street_name, communities) in enumerate(streets, start=1):
            street_key = f"{code}-{s:02d}"
            street_centre = _place(centre, street_key, "street", s - 1, len(streets))
            nodes.append(_node(street_key, code, street_name, "street", None, street_centre))
            for c, community_name in enumerate(communities, start=1):
                community_key = f"{street_key}-{c:02d}"
                community_centre = _place(street_centre, community_key, "community", c - 1, len(communities))
                nodes.append(
                    _node(community_key, street_key, community_name, "community", None, community_centre)
                )
                for g, grid_name in enumerate(GRID_NAMES, start=1):
                    grid_key = f"{community_key}-{g}"
                    grid_centre = _place(community_centre, grid_key, "grid", g - 1, len(GRID_NAMES))
                    nodes.append(_node(grid_key, community_key, grid_name, "grid", None, grid_centre))
    return nodes


def render(nodes: list[dict]) -> str:
    """One node per line: compact, and diffs stay readable."""
    lines = ",\n".join("  " + json.dumps(n, ensure_ascii=False) for n in nodes)
    return "[\n" + lines + "\n]\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    text = render(build())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m yijing.demo.build_baotou", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {len(text.splitlines()) - 2} nodes to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
