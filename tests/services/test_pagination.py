"""Keyset pagination: every row once, in order, under inserts; a bad cursor is a clear 422."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from yijing.errors import InvalidInput
from yijing.extensions import db
from yijing.models import Jurisdiction
from yijing.pagination import SortKey, paginate
from yijing.services import jurisdictions


def _nodes(n: int) -> list[dict]:
    root = [{"key": "c", "parent_key": None, "name": "市", "level": "city"}]
    return root + [
        {"key": f"d{i}", "parent_key": "c", "name": f"区{i % 3}", "level": "district"} for i in range(n)
    ]


def _page(cursor, limit=4):
    stmt = select(Jurisdiction).where(Jurisdiction.level == "district")
    keys = [SortKey(Jurisdiction.name, descending=True), SortKey(Jurisdiction.id)]
    return paginate(stmt, keys, lambda j: [j.name, j.id], cursor=cursor, limit=limit)


def test_walks_every_row_once_in_order(app_ctx):
    jurisdictions.import_nodes(_nodes(11))
    seen, cursor, pages = [], None, 0
    while True:
        page = _page(cursor)
        seen.extend((j.name, j.id) for j in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 11 == len(set(seen))
    assert seen == sorted(seen, key=lambda t: (-ord(t[0][-1]), t[1]))


def test_rows_inserted_before_the_cursor_do_not_shift_the_next_page(app_ctx):
    jurisdictions.import_nodes(_nodes(6))
    first = _page(None, limit=3)
    jurisdictions.import_nodes([{"key": "new", "parent_key": "c", "name": "区9", "level": "district"}])
    second = _page(first.next_cursor, limit=10)
    assert {j.id for j in first.items}.isdisjoint({j.id for j in second.items})
    assert len(first.items) + len(second.items) == 6


@pytest.mark.parametrize("cursor", ["garbage!", "WzFd", "e30"])
def test_bad_cursor(app_ctx, cursor):
    db.session.rollback()
    with pytest.raises(InvalidInput) as excinfo:
        _page(cursor)
    assert excinfo.value.code == "invalid_cursor"
