"""A request's deadline: a search stops at the first stage boundary past it, and nothing changes without one."""

from __future__ import annotations

import time

import pytest

from pipeline.deadline import check, deadline
from pipeline.errors import DeadlineExceeded, SousuoError


def test_without_a_deadline_checking_never_stops_anything():
    check("anywhere")


def test_past_the_deadline_a_check_raises_naming_the_stage():
    with deadline(0.0):
        time.sleep(0.002)
        with pytest.raises(DeadlineExceeded, match="fusion"):
            check("fusion")


def test_the_deadline_is_a_user_facing_error():
    assert issubclass(DeadlineExceeded, SousuoError)


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_a_search_past_its_deadline_stops_in_every_mode(sample_searcher, mode):
    with deadline(0.0), pytest.raises(DeadlineExceeded):
        time.sleep(0.002)
        sample_searcher.search("向量检索 inverted index", k=5, mode=mode)


def test_a_search_within_its_deadline_answers_as_without_one(sample_searcher):
    free = sample_searcher.search("inverted index", k=5, mode="hybrid")
    with deadline(60.0):
        bounded = sample_searcher.search("inverted index", k=5, mode="hybrid")
    assert [h.doc_id for h in bounded.hits] == [h.doc_id for h in free.hits]
    assert [h.score for h in bounded.hits] == [h.score for h in free.hits]


def test_the_deadline_ends_with_its_block(sample_searcher):
    with deadline(0.0):
        time.sleep(0.002)
    assert sample_searcher.search("inverted index", k=3).hits
