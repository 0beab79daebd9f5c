"""The reproduction matrix: conditions × datasets with their recorded nDCG@10, rerun and compared cell by cell."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import InputError
from .runs import evaluate


@dataclass
class MatrixCell:
    dataset: str
    method: str
    expected: float  # nDCG@10
    split: str = "test"
    slow: bool = False
    dense: bool = True
    encoder: str | None = None  # the dense encoder (`static`, `minilm`, ...); None: `dense.encoder` as configured
    dense_settings: dict | None = None  # `dense` settings the cell was recorded with, e.g. {static_queries: teacher}


def load_matrix(path: Path, datasets_dir: Path | None = None) -> tuple[list[Path], float, list[MatrixCell]]:
    """(dataset roots, `datasets_dir` first when given; tolerance; cells) of a reproduction matrix."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    base = Path(path).resolve().parent
    roots = [Path(datasets_dir)] if datasets_dir else []
    roots += [(base / root).resolve() for root in spec["dataset_roots"]]
    cells = [
        MatrixCell(c["dataset"], c["method"], float(c["ndcg@10"]), c.get("split", "test"), bool(c.get("slow")),
                   bool(c.get("dense", True)), c.get("encoder"), c.get("dense_settings"))
        for c in spec["cells"]
    ]
    return roots, float(spec["tolerance"]), cells


def dataset_path(roots: list[Path], name: str) -> Path:
    for root in roots:
        if (root / name / "corpus.jsonl").is_file():
            return root / name
    raise InputError(f"dataset {name!r} is in none of {[str(r) for r in roots]}")


def evaluate_cell(roots: list[Path], cell: MatrixCell, settings: Settings, show_progress: bool = False) -> dict:
    """One cell's evaluation summary. A cell that names no encoder was recorded with the corpus's teacher, so it
    runs with one however long embedding would take: `auto` would pick the static encoder on a cold cache."""
    if cell.encoder is None:
        settings = settings.model_copy(update={"dense": settings.dense.model_copy(
            update={"time_budget_s": float("inf")})})
    if cell.dense_settings:
        dense = settings.dense.model_validate({**settings.dense.model_dump(), **cell.dense_settings})
        settings = settings.model_copy(update={"dense": dense})
    return evaluate(dataset_path(roots, cell.dataset), cell.method, cell.split, settings, show_progress,
                    encoder=cell.encoder, dense=cell.dense)


def run_matrix(path: Path, settings: Settings, include_slow: bool = False, show_progress: bool = False):
    """Each cell's measured nDCG@10 beside its expected value; yields one row per cell as it finishes."""
    roots, tolerance, cells = load_matrix(path, settings.datasets_dir)
    for cell in cells:
        if cell.slow and not include_slow:
            continue
        summary = evaluate_cell(roots, cell, settings, show_progress)
        got = summary["ndcg@10"]
        yield {"dataset": cell.dataset, "method": summary["method"], "split": cell.split, "expected": cell.expected,
               "ndcg@10": got, "ok": abs(got - cell.expected) <= tolerance}
