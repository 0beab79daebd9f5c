"""Training triples for fine-tuning an encoder on an index: judged, click-labelled or title queries, BM25 hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..behaviour.labels import click_labels
from ..behaviour.sessions import ClickLog
from ..dense.cache import EmbeddingCache, embed_with_cache
from ..dense.encoders import MINILM, choose_encoder_name, load_encoder, resolve_device
from ..dense.passages import split_passages
from ..dense.static import published_static
from ..dense.tuned import Triples, tune_and_save, tune_queries, tune_static
from ..errors import InputError
from ..eval.beir import Qrels
from ..index.querylog import QueryLog
from ..retrieval.branches import bm25_branch
from ..search.plan import plan_query
from ..search.reader import IndexReader


class PassageText:
    """A document's first passage as the dense index embeds it (title, newline, body window), or its body alone."""

    def __init__(self, reader: IndexReader):
        self.reader = reader
        self.window = reader.settings.dense.passage_window

    def __call__(self, doc_ord: int, with_title: bool = True) -> str:
        title = self.reader.stored_text("title", doc_ord) if with_title else ""
        body = self.reader.stored_text("body", doc_ord)
        return split_passages(doc_ord, title, body, self.window, 0)[0].text


def hard_negatives(reader: IndexReader, text: str, exclude: set[int], depth: int) -> list[int]:
    """BM25's top `depth` documents for `text`, those in `exclude` (judged relevant, or the source) left out."""
    plan = plan_query(reader, text, syntax=False)
    return [int(d) for d in bm25_branch(reader, plan, depth).doc_ords if int(d) not in exclude]


def query_triples(reader: IndexReader, queries: dict[str, str], qrels: Qrels, source: dict,
                  show_progress: bool = False) -> Triples:
    """One triple per (query, relevant document): the document's first passage and a hard negative drawn from
    BM25's top documents for the query that are not judged relevant (a random document when BM25 finds none)."""
    config = reader.settings.dense
    rng = np.random.default_rng(config.tune_seed)
    ordinal = reader.ordinals
    text = PassageText(reader)
    triples = Triples([], [], [], source)
    for qid, query in tqdm(queries.items(), desc="hard negatives", unit="q", disable=not show_progress):
        relevant = {ordinal[d] for d, grade in qrels.get(qid, {}).items() if grade > 0 and d in ordinal}
        if not relevant:
            continue
        negatives = hard_negatives(reader, query, relevant, config.tune_negative_depth)
        for doc in sorted(relevant):
            negative = negatives[rng.integers(len(negatives))] if negatives else int(rng.integers(reader.n_docs))
            triples.anchors.append(query)
            triples.positives.append(text(doc))
            triples.negatives.append(text(negative))
    triples.source = {**source, "queries": len({a for a in triples.anchors})}
    return _capped(triples, config.tune_max_pairs, rng)


def title_triples(reader: IndexReader, show_progress: bool = False) -> Triples:
    """Pseudo-queries where nothing is judged: each title is the query for its own body (the passage without its
    title, so the pair is not a copy); the hard negative is the body of a document BM25 ranks high for the title."""
    config = reader.settings.dense
    rng = np.random.default_rng(config.tune_seed)
    text = PassageText(reader)
    docs = [d for d in range(reader.n_docs) if reader.stored_text("title", d).strip()
            and reader.stored_text("body", d).strip()]
    if not docs:
        raise InputError("no judged queries and no documents with both a title and a body: nothing to tune on")
    docs = [docs[i] for i in sorted(rng.permutation(len(docs))[: config.tune_max_pairs])]
    triples = Triples([], [], [], {"source": "titles", "queries": len(docs)})
    for doc in tqdm(docs, desc="hard negatives", unit="title", disable=not show_progress):
        title = reader.stored_text("title", doc)
        negatives = hard_negatives(reader, title, {doc}, config.tune_negative_depth)
        negative = negatives[rng.integers(len(negatives))] if negatives else int(rng.integers(reader.n_docs))
        triples.anchors.append(title)
        triples.positives.append(text(doc, with_title=False))
        triples.negatives.append(text(negative, with_title=False))
    return triples


def click_triples(reader: IndexReader, source: str = "pbm", show_progress: bool = False) -> Triples:
    """Queries of the index's query log, with the documents click model `source` grades relevant."""
    behaviour = reader.settings.behaviour
    labels = click_labels(ClickLog.from_querylog(QueryLog(reader.root), behaviour.positions), source, behaviour)
    return query_triples(reader, labels.queries, labels.qrels, {"source": f"clicks-{source}", **labels.source},
                         show_progress)


def _capped(triples: Triples, cap: int, rng: np.random.Generator) -> Triples:
    if len(triples) <= cap:
        return triples
    keep = sorted(rng.choice(len(triples), cap, replace=False))
    return Triples(*([column[i] for i in keep] for column in (triples.anchors, triples.positives, triples.negatives)),
                   triples.source)


def tune_encoder(reader: IndexReader, triples: Triples, publish: bool = True, max_steps: int = -1,
                 kind: str = "minilm") -> Path:
    """Fine-tune MiniLM on `triples` into the index's encoders/tuned/, or (`kind` static) the index's static model
    into a new version of it in encoders/static/; published unless told otherwise."""
    config = reader.settings.dense
    device = resolve_device(config.device)
    if kind == "static":
        teacher = choose_encoder_name(reader.version.documents.column("lang").to_pylist())
        folder = published_static(reader.root, teacher)
        if folder is None:
            raise InputError(f"index {reader.root} has no static encoder to tune: build it with --encoder static first")
        return tune_static(reader.root, folder, triples, config, device, publish, max_steps)
    if config.tune_side == "queries":
        base = load_encoder(MINILM, config.batch_size, device)
        cache = EmbeddingCache(reader.settings.cache_dir, base.model_id, base.dim)
        positives = embed_with_cache(base, triples.positives, cache)[0]
        negatives = embed_with_cache(base, triples.negatives, cache)[0]
        return tune_queries(reader.root, triples.anchors, positives, negatives, triples.source, config, device,
                            publish)
    return tune_and_save(reader.root, triples, MINILM, config, device, publish, max_steps)
