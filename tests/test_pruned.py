"""Pruned top-k equals the exhaustive top-k — documents, scores to the bit, tie order, counts — one query at a
time and batched, summed whole or pruned, with filters, phrases and boolean clauses."""

import numpy as np
import pytest
from conftest import DATASETS

from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.index.postings import FieldPostings
from pipeline.search.bm25 import bm25_scores
from pipeline.search.filters import Filters
from pipeline.search.pruned import Impacts, pruned_top_k, top_k_many
from pipeline.search.topk import top_k
from pipeline.searcher import Searcher

K1, B = 1.2, 0.75


def exhaustive(postings, term_ids, k, boost=1.0, allowed=None):
    scores = 0.0 + boost * bm25_scores(postings, term_ids, K1, B)
    mask = scores > 0 if allowed is None else (scores > 0) & allowed
    candidates = np.flatnonzero(mask)
    top = candidates[top_k(candidates, scores[candidates], k)]
    return top, scores[top]


def random_postings(rng, n_docs, n_terms, tokens_per_doc, run=1):
    """A Zipf-like corpus; with `run` > 1, each run of `run` documents is identical, which makes ties."""
    leaders = [np.minimum(rng.zipf(1.3, rng.integers(1, tokens_per_doc)) - 1, n_terms - 1)
               for _ in range(-(-n_docs // run))]
    per_doc = [leaders[d // run] for d in range(n_docs)]
    lengths = np.array([len(terms) for terms in per_doc])
    docs = np.repeat(np.arange(n_docs), lengths)
    positions = np.arange(len(docs)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return FieldPostings.from_tokens(docs.astype(np.int32), np.concatenate(per_doc).astype(np.int32),
                                     positions.astype(np.int32), n_docs, n_terms)


@pytest.mark.parametrize("prune_above", [0, 1 << 62])
@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_and_queries_give_the_exhaustive_top_k(seed, prune_above):
    rng = np.random.default_rng(seed)
    postings = random_postings(rng, 3_000, 400, 60, run=1 + seed % 3 * 4)
    impacts = Impacts.of(postings, K1, B)
    for _ in range(40):
        query = rng.integers(0, 400, rng.integers(1, 9)).tolist()  # repeats included
        k = int(rng.choice([1, 3, 10, 100, 5_000]))
        boost = float(rng.choice([1.0, 0.5, 2.5]))
        allowed = rng.random(3_000) < 0.3 if rng.random() < 0.3 else None
        docs, scores = pruned_top_k(postings, impacts, query, k, boost, allowed, prune_above)
        expected_docs, expected_scores = exhaustive(postings, query, k, boost, allowed)
        assert docs.tolist() == expected_docs.tolist(), (seed, query, k)
        assert scores.tolist() == expected_scores.tolist()


@pytest.mark.parametrize("prune_above", [0, 1 << 62])
def test_a_batch_of_queries_gives_each_query_its_exhaustive_top_k(prune_above):
    rng = np.random.default_rng(7)
    postings = random_postings(rng, 3_000, 400, 60, run=4)
    queries = [rng.integers(0, 400, rng.integers(0, 12)).tolist() for _ in range(200)]  # empty ones included
    got = top_k_many(postings, Impacts.of(postings, K1, B), queries, 10, prune_above=prune_above)
    for query, (docs, scores) in zip(queries, got):
        expected_docs, expected_scores = exhaustive(postings, query, 10)
        assert docs.tolist() == expected_docs.tolist() and scores.tolist() == expected_scores.tolist(), query


def test_identical_documents_tie_and_rank_by_ordinal():
    postings = FieldPostings.from_tokens(np.repeat(np.arange(50, dtype=np.int32), 2),
                                         np.tile(np.array([0, 1], dtype=np.int32), 50),
                                         np.tile(np.array([0, 1], dtype=np.int32), 50), 50, 2)
    docs, scores = pruned_top_k(postings, Impacts.of(postings, K1, B), [0, 1], 7)
    assert docs.tolist() == list(range(7)) and len(set(scores.tolist())) == 1


def test_terms_without_postings_and_an_empty_query_return_nothing():
    postings = random_postings(np.random.default_rng(0), 100, 50, 10)
    bounds = Impacts.of(postings, K1, B)
    unused = int(np.flatnonzero(np.diff(postings.term_indptr) == 0)[0])
    assert pruned_top_k(postings, bounds, [unused], 10)[0].tolist() == []
    assert pruned_top_k(postings, bounds, [], 10)[0].tolist() == []


@pytest.fixture(scope="module")
def scifact(settings, shared_datasets):
    dataset = BeirDataset.load(DATASETS / "scifact")
    lexical = settings_for("bm25", settings)
    return dataset, cached_index(dataset, lexical), lexical


def test_every_scifact_query_gets_the_exhaustive_top_10_and_top_100_pruned_or_not(scifact):
    dataset, index, settings = scifact
    searcher = Searcher.open(index, settings)
    texts = list(dataset.queries.values())
    plans = [searcher.plan(text, syntax=False) for text in texts]
    postings, impacts = searcher.reader.postings("text"), searcher.reader.impacts("text")
    for k in (10, 100):
        expected = [exhaustive(postings, plan.scored_ids, k) for plan in plans]
        for prune_above in (0, 1 << 62):
            got = top_k_many(postings, impacts, [plan.scored_ids for plan in plans], k, prune_above=prune_above)
            for text, (docs, scores), (expected_docs, expected_scores) in zip(texts, got, expected):
                assert docs.tolist() == expected_docs.tolist(), text
                assert scores.tolist() == expected_scores.tolist()


def test_a_batch_ranks_as_the_searcher_ranks_each_query(scifact):
    dataset, index, settings = scifact
    searcher = Searcher.open(index, settings)
    texts = list(dataset.queries.values())[:200]
    for text, (docs, scores) in zip(texts, searcher.rank_bm25_many(texts, 20)):
        top = searcher.rank(text, 20, syntax=False)
        assert docs.tolist() == top.doc_ords.tolist() and scores.tolist() == top.scores.tolist(), text


def test_every_scifact_query_ranks_through_the_searcher_as_exhaustively(scifact):
    dataset, index, settings = scifact
    pruned = Searcher.open(index, settings)
    reference = Searcher.open(index, settings.model_copy(update={"bm25": settings.bm25.model_copy(
        update={"pruning": False})}))
    for text in dataset.queries.values():
        for k, offset in ((10, 0), (90, 10)):
            a = pruned.rank(text, k, syntax=False, offset=offset)
            b = reference.rank(text, k, syntax=False, offset=offset)
            assert a.doc_ords.tolist() == b.doc_ords.tolist(), text
            assert a.scores.tolist() == b.scores.tolist() and a.total_matches == b.total_matches


@pytest.mark.parametrize("query", ['"inverted index" postings', "index AND NOT dense", "-ranking",
                                   "bm25 OR 向量", "+检索 排序", '"向量 检索"', "title:index body:fast"])
def test_phrases_boolean_clauses_and_filters_rank_as_exhaustively(sample_index, settings, query):
    pruned = Searcher.open(sample_index, settings)
    reference = Searcher.open(sample_index, settings.model_copy(update={"bm25": settings.bm25.model_copy(
        update={"pruning": False})}))
    for filters in (None, Filters(langs=("en",)), Filters(tags=("indexing",))):
        a, b = pruned.rank(query, 20, filters), reference.rank(query, 20, filters)
        assert a.doc_ords.tolist() == b.doc_ords.tolist() and a.scores.tolist() == b.scores.tolist(), query
        assert a.total_matches == b.total_matches


@pytest.mark.parametrize("boost", [0.0, 3.0])
def test_a_field_searched_with_any_boost_ranks_as_exhaustively(sample_index, settings, boost):
    pruned = Searcher.open(sample_index, settings)
    reference = Searcher.open(sample_index, settings.model_copy(update={"bm25": settings.bm25.model_copy(
        update={"pruning": False})}))
    for query in ("inverted index", "向量检索"):
        a = pruned.rank_plan(pruned.plan(query, field_boosts={"title": boost}), 10)
        b = reference.rank_plan(reference.plan(query, field_boosts={"title": boost}), 10)
        assert a.doc_ords.tolist() == b.doc_ords.tolist() and a.total_matches == b.total_matches
        assert a.scores.tolist() == b.scores.tolist()
