"""Run the fake WeChat API in a background thread (for tests)."""

from __future__ import annotations

import threading
from types import TracebackType

from werkzeug.serving import WSGIRequestHandler, make_server

from fakewechat.app import create_fake_app
from fakewechat.state import FakeWeChatState


class _QuietRequestHandler(WSGIRequestHandler):
    """Keeps the per-request access log (which shows access tokens) out of test output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class FakeWeChatServer:
    """The fake, listening on 127.0.0.1 on a free port from construction until :meth:`stop`.

    ``with FakeWeChatServer() as fake: ...`` stops it on exit; ``fake.base_url`` is what the gateway takes,
    ``fake.state`` the in-process control (``fail``, ``requests``, ``expire_tokens``...).
    """

    def __init__(
        self, state: FakeWeChatState | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state or FakeWeChatState()
        self.app = create_fake_app(self.state)
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietRequestHandler)
        self.host = host
        self.port = self._server.server_port
        self.base_url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"fakewechat:{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> FakeWeChatServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
