"""``lesionlite serve``: the on-device web page, on loopback unless ``--expose`` is given.

Served by waitress when it is installed (``pip install 'lesionlite[serve]'``), else by Flask's
development server with a note.
"""
from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from lesionlite.edge.args import in_range
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.camera.sources import SourceError, open_source
from lesionlite.edge.errors import CommandError
from lesionlite.edge.serve import SAVE_LIMIT, SAVE_MIN_FREE

if TYPE_CHECKING:
    from flask import Flask

    from lesionlite.edge.serve.live import LiveView

FLASK_HINT = "lesionlite serve needs Flask: pip install 'lesionlite[serve]' (Flask and waitress)"

SERVER_THREADS = 4
"""Request threads: decoding runs in parallel, the interpreter is shared under its lock."""
CONNECTION_LIMIT = 1000
"""Open connections waitress serves (its default, 100, let 100 idle ones stop /healthz from answering);
fewer if the process may not open that many files."""
CHANNEL_TIMEOUT = 20
"""Seconds a connection may stay idle (waitress: 120) before it is closed, checked every 5 seconds."""
BODY_LIMIT = 2**27
"""Request bodies waitress takes before answering with its own plain-text 413 (at the headers, when they
declare a larger body): up to it, an upload over ``--max-upload-mb`` gets the page's JSON 413. Waitress
keeps a body in a temporary file, which is memory where ``/tmp`` is a tmpfs (Debian Trixie's default),
so this bounds what one upload can hold: 128 MiB, or twice ``--max-upload-mb`` and 1 MiB if more."""
UPLOAD_MB_RANGE = (0.1, 64)
"""``--max-upload-mb`` bounds: an upload is held in memory while it is classified, by each request thread."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; a non-loopback address needs --expose)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0 picks a free one)")
    p.add_argument("--expose", action="store_true",
                   help="allow a non-loopback --host: anyone on the network can then use the page "
                        "(no login, no TLS)")
    p.add_argument("--save-dir", metavar="DIR",
                   help="keep each classified photo here under a server-made name, with a JSON sidecar "
                        "holding its result (default: keep nothing)")
    p.add_argument("--save-limit", type=in_range(int, 1, 1_000_000), default=SAVE_LIMIT, metavar="N",
                   help=f"--save-dir keeps at most N photos, and stops while its disk has under "
                        f"{SAVE_MIN_FREE // 2**20} MiB free; the answers then say the photo was not kept "
                        f"(default: {SAVE_LIMIT})")
    p.add_argument("--max-upload-mb", type=in_range(float, *UPLOAD_MB_RANGE, " MB"), default=16.0, metavar="N",
                   help=f"refuse larger uploads with 413: {UPLOAD_MB_RANGE[0]:g} to {UPLOAD_MB_RANGE[1]:g} "
                        "(default: 16)")
    p.add_argument("--camera", metavar="SOURCE",
                   help="also show a live camera view at /live: auto, picamera2, opencv:INDEX or replay:PATH")


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Flask, sock: socket.socket, max_body: int) -> Callable[[], None]:
    """The serving loop for ``app`` on the bound ``sock``: waitress if installed, else Flask's dev server."""
    try:
        from waitress import create_server
    except ImportError:
        from werkzeug.serving import make_server as dev_server

        print("note: waitress is not installed (pip install 'lesionlite[serve]'); "
              "using Flask's development server", file=sys.stderr)
        host, port = sock.getsockname()[:2]
        return dev_server(host, port, app, threaded=True, fd=sock.fileno()).serve_forever
    return create_server(app, sockets=[sock], threads=SERVER_THREADS, max_request_body_size=max_body,
                         connection_limit=_connection_limit(), channel_timeout=CHANNEL_TIMEOUT, cleanup_interval=5,
                         asyncore_use_poll=True, ident="lesionlite").run


def _connection_limit() -> int:
    """:data:`CONNECTION_LIMIT`, raising this process's open-file limit towards it where allowed."""
    try:
        import resource
    except ImportError:
        return CONNECTION_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONNECTION_LIMIT + 64  # the model, the listening socket, temporary files of large uploads
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return CONNECTION_LIMIT if soft == resource.RLIM_INFINITY else max(16, min(CONNECTION_LIMIT, soft - 64))


def main(args: argparse.Namespace) -> int:
    """Load the model once, bind, and serve; exit 0 on Ctrl-C."""
    try:
        from lesionlite.edge.serve.app import is_loopback
    except ImportError as exc:
        raise CommandError(f"{FLASK_HINT} ({exc})") from None
    if not is_loopback(args.host) and not args.expose:
        raise CommandError(f"--host {args.host} is not a loopback address; add --expose to let "
                         "anyone on the network reach the page")
    clf = Classifier(args.model, args.threads, args.runtime, args.labels_file)  # errors: see lesionlite.cli.main
    live = _start_live(args.camera, clf) if args.camera else None
    try:
        return _serve(args, clf, live)
    finally:
        if live:
            live.stop()


def _start_live(spec: str, clf: Classifier) -> LiveView:
    """The camera view's thread over the source ``spec``; a one-line error if it cannot open."""
    from lesionlite.edge.serve.live import LiveView

    try:
        return LiveView(open_source(spec), clf).start()
    except SourceError as exc:
        raise CommandError(f"{exc}") from None


def _serve(args: argparse.Namespace, clf: Classifier, live: LiveView | None) -> int:
    from lesionlite.edge.serve.app import create_app, is_loopback

    try:
        app = create_app(clf, args.save_dir, args.max_upload_mb, loopback_only=not args.expose, live=live,
                         save_limit=args.save_limit)
    except OSError as exc:
        raise CommandError(f"cannot use --save-dir {args.save_dir}: {exc.strerror}") from None
    try:
        sock = socket.create_server((args.host.strip("[]"), args.port),
                                    family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    except OSError as exc:
        raise CommandError(f"cannot listen on {url(args.host, args.port)}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    if not is_loopback(host):
        print(f"warning: listening on {host}: anyone on the network who can reach this device can use the "
              "page and its API (no login, no TLS)", file=sys.stderr)
    run = make_server(app, sock, max(BODY_LIMIT, 2 * app.config["MAX_CONTENT_LENGTH"] + (1 << 20)))
    print(f"lesionlite: model {clf.bundle.name} ({clf.bundle.sha256[:12]}), serving on {url(host, port)}",
          file=sys.stderr, flush=True)
    try:
        run()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0

