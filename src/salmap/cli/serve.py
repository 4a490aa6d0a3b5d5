"""``salmap serve``: the web page and its JSON API on a local server."""

from __future__ import annotations

import ipaddress
import socket
import sys

from salmap.cli.common import quiet_import_tensorflow
from salmap.errors import UsageError

LOOPBACK = "127.0.0.1"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a web page: upload a photo, pick methods, compare, download",
        description=(
            "Start a local web server with salmap's page (model, static and motion saliency, "
            "evaluation reports) and its JSON API (/api). It listens on 127.0.0.1 only "
            "unless --host says otherwise; the page needs no internet."
        ),
        epilog="examples:\n  salmap serve\n  salmap serve --port 9000 --model efficientnet_lite0 "
        "--model mobilenet_v2",
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free one)")
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME|FILE",
        help="a model the page may use (repeat for several; default efficientnet_lite0). "
        "Only these: the page can never load a file",
    )
    parser.add_argument(
        "--queue", type=int, default=8, help="requests that may wait for a model (8); more get 503"
    )
    parser.set_defaults(handler=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Open the listening socket now, so a taken port is a one-line error before the
    model loads."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be in 0..65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


def run(args) -> int:
    try:
        import uvicorn

        from salmap.web import create_app
    except ImportError as error:
        raise UsageError(
            f"salmap serve needs the web extra: pip install 'salmap[web]' ({error})"
        ) from None
    if args.queue < 0:
        raise UsageError(f"--queue must be >= 0, not {args.queue}")
    if not _is_loopback(args.host):
        print(
            f"salmap: warning: listening on {args.host}: other computers can reach this "
            "server and use its models; use --host 127.0.0.1 to keep it private",
            file=sys.stderr,
        )
    sock = _bind(args.host, args.port)
    quiet_import_tensorflow(args.debug)
    # on loopback, answer only requests addressed to it (no DNS rebinding)
    hosts = ["127.0.0.1", "localhost"] if args.host in ("127.0.0.1", "localhost") else None
    app = create_app(args.model or None, queue=args.queue, hosts=hosts)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"salmap: serving on http://{shown}:{port}/ (Ctrl+C to stop)", flush=True)
    # log_config=None: uvicorn would otherwise reconfigure (and close) the process's
    # logging handlers; its warnings still reach stderr through the root logger
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, log_config=None)
    )
    server.run(sockets=[sock])
    return 0
