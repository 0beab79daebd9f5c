"""Fusion weights tuned on judged queries: a versioned artifact per fusion method, published like a ranker."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..io import (
    CURRENT_POINTER,
    atomic_write_text,
    read_pointer,
    timestamped_id,
    write_pointer,
)

FUSION_DIR = "fusion"


@dataclass(frozen=True)
class FusionWeights:
    """Per-branch weights for one fusion method, with where they came from."""

    method: str
    weights: dict[str, float]
    weights_id: str = "configured"  # "configured" for the settings' weights, else the artifact's id
    trained_on: str = ""
    train_ndcg_at_10: float | None = None
    created_at: str = ""

    @classmethod
    def tuned(cls, method: str, weights: dict[str, float], trained_on: str, train_ndcg_at_10: float) -> FusionWeights:
        return cls(method, weights, timestamped_id(), trained_on, train_ndcg_at_10, datetime.now(UTC).isoformat())

    def save(self, index_root: Path, publish: bool = True) -> Path:
        """Write INDEX/fusion/METHOD/ID.json and, by default, point METHOD/CURRENT at it."""
        return save_artifact(Path(index_root) / FUSION_DIR / self.method, self.weights_id, asdict(self), publish)

    @classmethod
    def published(cls, index_root: Path, method: str) -> FusionWeights | None:
        """The published tuned weights of `method`, or None where none were tuned."""
        data = published_artifact(Path(index_root) / FUSION_DIR / method)
        return None if data is None else cls(**data)


def save_artifact(folder: Path, artifact_id: str, payload: dict, publish: bool) -> Path:
    """Write FOLDER/ID.json and, when `publish`, point FOLDER/CURRENT at it: how fusion artifacts are versioned."""
    path = atomic_write_text(folder / f"{artifact_id}.json", json.dumps(payload, indent=2))
    if publish:
        write_pointer(folder / CURRENT_POINTER, artifact_id)
    return path


def published_artifact(folder: Path) -> dict | None:
    """The JSON of the artifact FOLDER/CURRENT points at, or None where nothing was published."""
    artifact_id = read_pointer(folder / CURRENT_POINTER)
    if artifact_id is None:
        return None
    return json.loads((folder / f"{artifact_id}.json").read_text(encoding="utf-8"))


def served_weights(index_root: Path, method: str, configured: dict[str, float]) -> FusionWeights:
    """What a searcher fuses with: the published tuned weights of `method`, else the configured ones."""
    return FusionWeights.published(index_root, method) or FusionWeights(method, dict(configured))
