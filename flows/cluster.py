"""`sousuo cluster`: partition an index into document shards and serve them on a Ray cluster (docs/scaling.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import InputError


def add_cluster_parser(sub) -> None:
    cluster = sub.add_parser("cluster", help="partition an index into shards and serve them on Ray Serve "
                                             "(needs the 'cluster' extra: ray[serve])")
    actions = cluster.add_subparsers(dest="action", required=True)
    part = actions.add_parser("partition", help="write N document shards of an index's published version")
    part.add_argument("--index", required=True, type=Path)
    part.add_argument("--out", required=True, type=Path, help="the partitioned index's folder (new)")
    part.add_argument("--shards", required=True, type=int)
    part.set_defaults(func=cmd_partition)
    serve = actions.add_parser("serve", help="serve a partitioned index: a Serve deployment per shard and a "
                                             "coordinator at http://HOST:PORT/search?q=…&mode=…")
    serve.add_argument("--cluster", required=True, type=Path, help="a folder written by `sousuo cluster partition`")
    serve.add_argument("--index", type=Path, help="partition this index into --cluster first, when it holds none")
    serve.add_argument("--shards", type=int, default=2, help="shards to partition --index into (default 2)")
    serve.add_argument("--address", help="a running Ray cluster (`auto`, or HEAD_IP:6379); default: start a "
                                         "local one")
    serve.add_argument("--host", default="127.0.0.1", help="address Serve's HTTP proxy binds (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_cluster_serve)


def cmd_partition(args, settings: Settings) -> int:
    from pipeline.cluster.partition import partition

    started = time.perf_counter()
    layout = partition(args.index, args.out, args.shards, settings)
    print(f"sousuo cluster: {layout.n_docs} documents in {len(layout.shards)} shards under {layout.root} "
          f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


def cmd_cluster_serve(args, settings: Settings) -> int:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise InputError("Ray Serve is not installed: pip install 'ray[serve]==2.60.0' (the 'cluster' extra)") \
            from None
    from pipeline.cluster.partition import LAYOUT, partition
    from pipeline.cluster.serve import application

    if args.index is not None and not (args.cluster / LAYOUT).exists():
        partition(args.index, args.cluster, args.shards, settings)
    app = application(args.cluster, settings)  # refuses a folder that is not a partitioned index before Ray starts
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app, name="sousuo", route_prefix="/search")
    print(f"sousuo cluster: serving {args.cluster} on http://{args.host}:{args.port}/search?q=…&mode=… "
          "(Ctrl-C stops it)", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0
