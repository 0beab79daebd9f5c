"""Run files and measures: nDCG@10, recall@100, MRR@10 and MAP through ir-measures, TREC and Parquet runs."""

from __future__ import annotations

from pathlib import Path

import ir_measures
import numpy as np
import pyarrow as pa
from ir_measures import AP, RR, R, nDCG

from .. import schemas
from .beir import Qrels

# Names in the JSON contract → ir-measures measures.
MEASURES = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10, "map": AP}

Run = dict[str, dict[str, float]]  # query id → doc id → score


def score_run(run: Run, qrels: Qrels) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query values of MEASURES; a judged query missing from the run scores 0."""
    per_query = {qid: dict.fromkeys(MEASURES, 0.0) for qid in qrels}
    names = {str(measure): name for name, measure in MEASURES.items()}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
        if metric.query_id in per_query:
            per_query[metric.query_id][names[str(metric.measure)]] = float(metric.value)
    means = {name: sum(q[name] for q in per_query.values()) / max(len(per_query), 1) for name in MEASURES}
    return means, per_query


def run_of(doc_ids: list[str], doc_ords, scores) -> dict[str, float]:
    """One query's run: doc id → score."""
    return {doc_ids[d]: float(s) for d, s in zip(np.asarray(doc_ords).tolist(), np.asarray(scores).tolist())}


def _ranked(run: Run):
    for qid, scores in run.items():
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        for rank, (doc_id, score) in enumerate(ranked, 1):
            yield qid, doc_id, rank, score


def write_trec_run(path: Path, run: Run, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for qid, doc_id, rank, score in _ranked(run):
            handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def run_table(run: Run, method: str) -> pa.Table:
    rows = [{"query_id": q, "doc_id": d, "rank": r, "score": s, "method": method} for q, d, r, s in _ranked(run)]
    return pa.Table.from_pylist(rows, schema=schemas.RUN)
