"""Development log lines (LOG_JSON=false) show an access line's method, path, status and duration."""

from __future__ import annotations

import logging


def test_the_plain_access_line_shows_method_path_status_and_duration(client, caplog):
    from yijing.web.request_log import PlainFormatter

    with caplog.at_level(logging.INFO, logger="yijing.access"):
        response = client.get("/api/v1/me")
    assert response.status_code == 401
    (record,) = [r for r in caplog.records if r.name == "yijing.access"]
    line = PlainFormatter().format(record)
    assert " INFO yijing.access: GET /api/v1/me 401 " in line
    assert line.split(" 401 ", 1)[1].split(" ms")[0].replace(".", "").isdigit()
    assert f"[{response.headers['X-Request-ID'][:8]}]" in line
    assert record.getMessage() == "request"  # the record itself (and the JSON line) is unchanged
