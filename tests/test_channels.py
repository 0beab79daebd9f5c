"""The recall channels from behaviour (issue 13 §6): related documents, the click graph, personal profiles, region."""

import json
import shutil

import pytest
from conftest import SAMPLE

from flows.cli import main
from pipeline.index.build import build_index
from pipeline.index.querylog import QueryLog
from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def duplicated_index(tmp_path_factory, settings):
    """The sample corpus plus two exact duplicates of en-001 under other ids (one differing only in case and
    spacing), which ingest keeps as documents of their own."""
    folder = tmp_path_factory.mktemp("duplicated")
    lines = (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    original = json.loads(lines[0])
    assert original["_id"] == "en-001"
    copy = {**original, "_id": "en-001-copy"}
    shouty = {**original, "_id": "en-001-shouty", "title": original["title"].upper(),
              "text": "  ".join(original["text"].split(" "))}
    (folder / "corpus.jsonl").write_text("\n".join(lines + [json.dumps(copy), json.dumps(shouty)]) + "\n",
                                         encoding="utf-8")
    index = folder / "index"
    build_index([folder / "corpus.jsonl"], index, settings)
    return index


def test_similar_never_returns_the_document_itself_or_its_exact_duplicates(duplicated_index, settings):
    searcher = Searcher.open(duplicated_index, settings)
    ids = searcher.doc_ids
    for doc_id in ("en-001", "en-001-copy", "en-001-shouty"):
        found = [ids[d] for d in searcher.similar(ids.index(doc_id), k=20).doc_ords]
        assert len(found) == 20
        assert not {"en-001", "en-001-copy", "en-001-shouty"} & set(found)


def test_similar_adds_documents_opened_in_the_same_sessions(tmp_path, sample_index, settings):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    log = QueryLog(index)
    # en-001 (inverted indexes) and zh-011 share no words: only sessions that opened both relate them.
    for session in range(3):
        query_id = log.log_query("index", "bm25", None, 1.0, ["en-001", "zh-011"], 2, session_id=f"s{session}")
        log.log_click(query_id, "en-001", 1, session_id=f"s{session}")
        log.log_click(query_id, "zh-011", 2, session_id=f"s{session}")
    searcher = Searcher.open(index, settings)
    ids = searcher.doc_ids
    before = [ids[d] for d in Searcher.open(sample_index, settings).similar(ids.index("en-001"), k=80).doc_ords]
    after = searcher.similar(ids.index("en-001"), k=80)
    found = [ids[d] for d in after.doc_ords]
    assert found.index("zh-011") < before.index("zh-011")
    assert "co_clicks" in after.sources[found.index("zh-011")]
    assert all("co_clicks" not in sources for doc, sources in zip(found, after.sources) if doc != "zh-011")


def test_similar_command_prints_one_line_per_document_shaped_like_search(sample_index, capsys):
    assert main(["similar", "en-001", "zh-011", "--index", str(sample_index), "-k", "4", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["doc_id"] for line in lines] == ["en-001", "zh-011"]
    for line in lines:
        assert len(line["results"]) == 4
        assert line["doc_id"] not in [hit["doc_id"] for hit in line["results"]]
        assert {"doc_id", "score", "title", "source", "lang", "tags"} <= set(line["results"][0])


def test_similar_command_refuses_an_unknown_document(sample_index, capsys):
    assert main(["similar", "no-such-doc", "--index", str(sample_index)]) == 3
    assert "no-such-doc" in capsys.readouterr().err
