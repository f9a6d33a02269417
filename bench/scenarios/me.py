"""``GET /api/v1/me`` for a logged-in mini-program user: the cheapest authenticated read.

Setup logs in through the fake WeChat server (``POST /api/v1/auth/wechat-login``) and keeps the
bearer token; wrk then sends ``GET /api/v1/me`` with it. Compare with the baseline's constant JSON
body: what is left is token verification plus loading the user (see docs/performance.md for what one ORM
SELECT or one Redis GET costs on this hardware).
"""

from __future__ import annotations

from bench.harness import BenchError, Context, Request


class MeScenario:
    name = "me"
    description = "GET /api/v1/me with a bearer token (one logged-in user)"
    needs_app = True
    baseline = "constant"

    login_code = "bench.1"

    def setup(self, ctx: Context) -> Request:
        resp = ctx.session.post(
            ctx.url("/api/v1/auth/wechat-login"), json={"code": self.login_code}, timeout=10
        )
        if resp.status_code != 200:
            raise BenchError(f"me: wechat-login answered {resp.status_code}: {resp.text[:500]}")
        token = resp.json().get("token")
        if not token:
            raise BenchError(f"me: wechat-login returned no token: {resp.text[:500]}")

        request = Request(path="/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        check = ctx.session.get(ctx.url(request.path), headers=request.headers, timeout=10)
        if check.status_code != 200:
            raise BenchError(f"me: GET /api/v1/me answered {check.status_code}: {check.text[:500]}")
        return request


SCENARIO = MeScenario()
