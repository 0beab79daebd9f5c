"""BM25 agrees with bm25s's Lucene variant on SciFact: same tokens in, same top-10 and scores out."""

import bm25s
import numpy as np
import pytest

from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.search.scoring import boosted_scores
from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def scifact(shared_datasets, settings):
    dataset = BeirDataset.load(shared_datasets / "scifact")
    settings = settings_for("bm25", settings)
    searcher = Searcher.open(cached_index(dataset, settings), settings)
    return dataset, searcher


def document_tokens(searcher):
    """Each document's `text` field (title tokens, then body tokens) exactly as indexed."""
    forward = searcher.reader.version.forward.fields
    terms = searcher.reader.version.vocabulary.terms
    title_ids, body_ids = np.asarray(forward["title"].term_ids), np.asarray(forward["body"].term_ids)
    out = []
    for doc in range(searcher.reader.n_docs):
        ids = np.concatenate([title_ids[forward["title"].doc_slice(doc)], body_ids[forward["body"].doc_slice(doc)]])
        out.append([terms[i] for i in ids])
    return out


def test_top10_and_scores_match_bm25s_lucene_on_scifact_queries(scifact):
    dataset, searcher = scifact
    reference = bm25s.BM25(method="lucene", k1=searcher.settings.bm25.k1, b=searcher.settings.bm25.b)
    reference.index(document_tokens(searcher), show_progress=False)
    query_ids = sorted(dataset.qrels("test"))
    compared = 0
    for qid in query_ids:
        tokens = searcher.reader.analyzer.terms(dataset.queries[qid])
        tokens = [t for t in tokens if t in searcher.reader.version.vocabulary.ids]
        if not tokens:
            continue
        ours = boosted_scores(searcher.reader, searcher.reader.known_ids(tokens))
        theirs = reference.get_scores(tokens).astype(np.float64)
        # bm25s's "lucene" method is Lucene's formula without the constant (k1 + 1): the factor is 1.
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
        top_ours = searcher.search(dataset.queries[qid], k=10, syntax=False, with_snippets=False)
        top_theirs = np.argsort(-theirs, kind="stable")[:10]
        kth = theirs[top_theirs[-1]]
        # Ties aside: where the reference has equal scores, the order among them is free.
        assert [h.doc_ord for h in top_ours.hits if ours[h.doc_ord] > kth + 1e-4] == [
            int(d) for d in top_theirs if theirs[d] > kth + 1e-4
        ]
        np.testing.assert_allclose([h.score for h in top_ours.hits], theirs[top_theirs], atol=1e-4)
        compared += 1
    assert compared == len(query_ids) == 300
