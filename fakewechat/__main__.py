"""``python -m fakewechat --host 127.0.0.1 --port 9400``: serve the fake WeChat API until interrupted."""

from __future__ import annotations

import argparse

from werkzeug.serving import make_server

from fakewechat.app import create_fake_app
from fakewechat.state import DEFAULT_APPID, DEFAULT_SECRET, FakeWeChatState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakewechat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--appid", default=DEFAULT_APPID, help="the only appid the fake accepts")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the secret that goes with --appid")
    args = parser.parse_args(argv)

    state = FakeWeChatState({args.appid: args.secret})
    server = make_server(args.host, args.port, create_fake_app(state), threaded=True)
    print(f"fakewechat listening on http://{args.host}:{server.server_port} (appid {args.appid})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
