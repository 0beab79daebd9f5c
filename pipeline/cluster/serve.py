"""The sharded index on Ray Serve: one deployment per shard and a coordinator that fans out to them.

Replicas, autoscaling and placement are Ray Serve's: set them per deployment (`shard-000`, …, `coordinator`) in a
Serve config file whose application imports `pipeline.cluster.serve:build_app`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ray import serve
from ray.serve import Application
from starlette.requests import Request

from ..config import Settings
from ..constants import SEARCH_MODES
from ..errors import InputError, SousuoError
from .coordinator import Coordinator
from .partition import Layout
from .shard import Shard


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ShardDeployment:
    """One shard's index and ANN index, held in memory by each replica."""

    def __init__(self, root: str, shard: int, settings: dict):
        self.shard = Shard(Layout.read(root), shard, Settings(**settings))

    def run(self, method: str, *args):
        return getattr(self.shard, method)(*args)


@serve.deployment(ray_actor_options={"num_cpus": 0})
class CoordinatorDeployment:
    """Analyzes and encodes each query once, fans out to the shards, merges, fuses and ranks; the HTTP ingress."""

    def __init__(self, root: str, settings: dict, *shards):
        async def call(shard: int, method: str, *args):
            return await shards[shard].run.remote(method, *args)

        self.coordinator = Coordinator(Layout.read(root), call, Settings(**settings))

    async def search(self, query: str, k: int = 10, mode: str = "bm25", offset: int = 0, with_snippets: bool = True):
        return await self.coordinator.search(query, k, mode, offset=offset, with_snippets=with_snippets)

    async def rank(self, query: str, k: int = 10, mode: str = "bm25") -> tuple[np.ndarray, np.ndarray, int]:
        """(global ordinals, scores, total matches): `Searcher.rank`'s page, without result rows."""
        _, docs, scores, total = await self.coordinator.rank(query, k, mode)
        return docs, scores, total

    async def __call__(self, request: Request) -> dict:
        """GET ?q=…&k=10&mode=bm25&offset=0: the native API's search response."""
        params = request.query_params
        try:
            mode = params.get("mode", "bm25")
            if mode not in SEARCH_MODES:
                raise InputError(f"unknown search mode {mode!r}; choose from {SEARCH_MODES}")
            response = await self.search(params.get("q", ""), int(params.get("k", 10)), mode,
                                         int(params.get("offset", 0)))
        except (SousuoError, ValueError) as error:
            return {"error": str(error)}
        return response.to_json()


def application(root: Path | str, settings: Settings | None = None) -> Application:
    """The app of a partitioned index: a deployment per shard, bound to the coordinator."""
    layout = Layout.read(root)
    dump = (settings or Settings()).model_dump(mode="json")
    shards = [ShardDeployment.options(name=name).bind(str(layout.root), number, dump)
              for number, name in enumerate(layout.shards)]
    return CoordinatorDeployment.options(name="coordinator").bind(str(layout.root), dump, *shards)


def build_app(args: dict) -> Application:
    """Serve's application builder (`import_path: pipeline.cluster.serve:build_app`, `args: {cluster: DIR}`)."""
    return application(args["cluster"])
