"""Fusion methods on hand-made branch results with answers worked out by hand."""

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.retrieval.branches import BranchResult
from pipeline.retrieval.fusion import convex, dbsf, fuse, rrf, tune_weights


def branch(name, docs, scores):
    return BranchResult(name, np.array(docs), np.array(scores, dtype=float))


RESULTS = {
    "lexical": branch("lexical", [1, 2, 3], [9.0, 6.0, 3.0]),
    "dense": branch("dense", [3, 1, 4], [0.9, 0.8, 0.5]),
}


def as_dict(fused):
    docs, scores = fused
    return dict(zip(docs.tolist(), scores.tolist()))


def test_rrf_sums_reciprocal_ranks():
    fused = as_dict(rrf(RESULTS, k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62) and fused[4] == pytest.approx(1 / 63)
    assert rrf(RESULTS, k=60)[0].tolist() == [1, 3, 2, 4]


def test_weighted_rrf_scales_each_branch():
    fused = as_dict(rrf(RESULTS, k=10, weights={"lexical": 2.0, "dense": 0.5}))
    assert fused[1] == pytest.approx(2 / 11 + 0.5 / 12)
    assert fused[4] == pytest.approx(0.5 / 13)


def test_a_zero_weight_removes_a_branch():
    docs, _ = rrf(RESULTS, k=60, weights={"lexical": 1.0, "dense": 0.0})
    assert docs.tolist()[:3] == [1, 2, 3] and 4 in docs.tolist()


def test_convex_min_max_combination():
    fused = as_dict(convex(RESULTS, {"lexical": 0.7, "dense": 0.3}, "minmax"))
    # lexical min-max: 1 → 1, 2 → 0.5, 3 → 0; dense: 3 → 1, 1 → 0.75, 4 → 0
    assert fused[1] == pytest.approx(0.7 * 1 + 0.3 * 0.75)
    assert fused[2] == pytest.approx(0.7 * 0.5)
    assert fused[3] == pytest.approx(0.3 * 1)
    assert fused[4] == pytest.approx(0.0)


def test_convex_z_score_combination():
    fused = as_dict(convex(RESULTS, {"lexical": 1.0, "dense": 1.0}, "zscore"))
    lexical_z = (np.array([9, 6, 3]) - 6) / np.std([9, 6, 3])
    dense_z = (np.array([0.9, 0.8, 0.5]) - np.mean([0.9, 0.8, 0.5])) / np.std([0.9, 0.8, 0.5])
    assert fused[1] == pytest.approx(lexical_z[0] + dense_z[1])
    assert fused[4] == pytest.approx(dense_z[2])


def test_dbsf_scales_by_three_sigma():
    fused = as_dict(dbsf(RESULTS))
    scores = np.array([9.0, 6.0, 3.0])
    low, high = scores.mean() - 3 * scores.std(), scores.mean() + 3 * scores.std()
    dense = np.array([0.9, 0.8, 0.5])
    dlow, dhigh = dense.mean() - 3 * dense.std(), dense.mean() + 3 * dense.std()
    assert fused[2] == pytest.approx((6 - low) / (high - low))
    assert fused[3] == pytest.approx((3 - low) / (high - low) + (0.9 - dlow) / (dhigh - dlow))


def test_fuse_dispatches_by_name_and_rejects_unknown_methods():
    assert fuse(RESULTS, "rrf", {}, 60)[0].tolist() == rrf(RESULTS)[0].tolist()
    with pytest.raises(InputError, match="unknown fusion method"):
        fuse(RESULTS, "borda", {})


def test_empty_branches_fuse_to_nothing():
    docs, scores = rrf({"a": branch("a", [], [])})
    assert docs.size == 0 and scores.size == 0


def test_weight_tuning_finds_the_branch_that_holds_the_answer():
    per_query = [
        {"lexical": branch("lexical", [1, 2], [2.0, 1.0]), "dense": branch("dense", [2, 1], [0.9, 0.1])},
        {"lexical": branch("lexical", [3, 4], [2.0, 1.0]), "dense": branch("dense", [4, 3], [0.9, 0.1])},
    ]
    relevant = [2, 4]

    def objective(fused):
        return float(np.mean([docs[0] == answer for (docs, _), answer in zip(fused, relevant)]))

    weights, best = tune_weights(per_query, objective, "convex", ["lexical", "dense"])
    assert best == 1.0 and weights["dense"] > weights["lexical"]
