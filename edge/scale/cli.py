"""``classify``'s engine options, and the choice between the engines. Imports no Ray: only
``--engine ray`` does, through :mod:`lesionlite.edge.scale.engine`."""
from __future__ import annotations

import importlib.util

from lesionlite.edge.args import positive
from lesionlite.edge.errors import CommandError

ENGINES = ("local", "ray")
RAY_HINT = ("--engine ray needs Ray Data: pip install 'lesionlite[scale]' "
            "(or: pip install -e '.[scale]' in a checkout)")


def add_arguments(p) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process (default); ray: Ray Data, on this machine's cores or a cluster's "
                   "nodes (needs --output; pip install 'lesionlite[scale]')")
    g.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: join the Ray cluster at ADDR (host:port of `ray start --head`) "
                   "instead of starting a local instance")
    g.add_argument("--actors", type=positive(int), metavar="N",
                   help="with --engine ray: classifier actors, one model each (default: half the cluster's CPUs)")


def main(args) -> int:
    from lesionlite.edge import batch

    if args.engine != "ray":
        given = [o for o, v in (("--address", args.address), ("--actors", args.actors)) if v is not None]
        if given:
            raise CommandError(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} --engine ray")
        return batch.main(args)
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise CommandError(f"{RAY_HINT}")
    from lesionlite.edge.scale import engine

    return engine.main(args)
