"""The recall channels from behaviour (issue 13 §6): related documents, the click graph, personal profiles, region."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE

from flows.cli import main
from pipeline.behaviour.profile import profile_for
from pipeline.index.build import build_index
from pipeline.index.querylog import QueryLog
from pipeline.index.store import Manifest, current_version, file_inventory, versions_dir
from pipeline.retrieval.channels import Audience
from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def duplicated_index(tmp_path_factory, settings):
    """The sample corpus with regions, plus two exact duplicates of en-001 under other ids (one differing only in
    case and spacing), which ingest keeps as documents of their own."""
    folder = tmp_path_factory.mktemp("duplicated")
    # Every other document is in the region "north"; the rest have none.
    lines = [json.dumps({**json.loads(line), **({"region": " north "} if i % 2 == 0 else {})})
             for i, line in enumerate((SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines())]
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
    rows = {row["doc_id"]: row for row in after.hits(searcher.reader)}
    assert rows["zh-011"]["reasons"] == ["often opened together with this one"]
    assert all("reasons" not in row for doc, row in rows.items() if doc != "zh-011")


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


def clicked_index(tmp_path, sample_index, clicks: dict[str, list[str]], user: str | None = None, times: int = 3):
    """A copy of the sample index whose log holds `times` searches of each query, each opening its documents."""
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    return log_clicks(index, clicks, user, times)


def log_clicks(index, clicks: dict[str, list[str]], user: str | None = None, times: int = 3):
    """`index` with `times` searches of each query logged, each opening its documents."""
    log = QueryLog(index)
    for query, docs in clicks.items():
        for n in range(times):
            query_id = log.log_query(query, "hybrid", None, 1.0, docs, len(docs), user_id=user,
                                     session_id=f"{query}-{n}")
            for position, doc in enumerate(docs, 1):
                log.log_click(query_id, doc, position, user_id=user, session_id=f"{query}-{n}")
    return index


def test_the_click_graph_recalls_a_document_opened_for_the_same_or_a_similar_query(tmp_path, sample_index,
                                                                                   settings):
    plain = Searcher.open(sample_index, settings)
    before = [plain.doc_ids[d] for d in plain.rank("reciprocal rank fusion", 100, mode="hybrid").doc_ords]
    assert "zh-011" not in before[:3]
    searcher = Searcher.open(clicked_index(tmp_path, sample_index, {"Reciprocal rank fusion": ["zh-011"]}), settings)
    assert not searcher.click_graph.empty
    for query in ("reciprocal rank fusion", "  RECIPROCAL   rank fusion ", "reciprocal rank fusion methods"):
        response = searcher.search(query, 10, mode="hybrid")
        found = [h.doc_id for h in response.hits]
        assert found.index("zh-011") < before.index("zh-011")
        assert response.hits[found.index("zh-011")].reasons == ["often opened after searching “Reciprocal rank fusion”"]
        assert all(not h.reasons for h in response.hits if h.doc_id != "zh-011")
    unrelated = searcher.search("bm25 length normalization", 10, mode="hybrid")
    assert all(not h.reasons for h in unrelated.hits)


def test_an_empty_log_leaves_hybrid_results_as_they_were(sample_index, settings):
    from pipeline.retrieval.hybrid import hybrid

    searcher = Searcher.open(sample_index, settings)
    assert searcher.click_graph.empty
    for query in ("reciprocal rank fusion", "倒排索引"):
        plan = searcher.plan(query, "hybrid")
        top = searcher.rank_plan(plan, 10, mode="hybrid")
        direct = hybrid(searcher.reader, plan, searcher.fusion_weights, searcher.adaptive_fusion)
        assert top.doc_ords.tolist() == direct.doc_ords[:10].tolist()
        assert top.channels is None


def test_a_ranker_trained_before_the_channel_features_still_loads_and_serves(tmp_path, sample_searcher):
    import lightgbm
    import numpy as np

    from pipeline.rank.features import FEATURES
    from pipeline.rank.model import Ranker, RankerCard

    old = list(FEATURES[:-2])
    rng = np.random.default_rng(0)
    data = lightgbm.Dataset(rng.random((200, len(old))), rng.integers(0, 3, 200), group=[20] * 10,
                            feature_name=old)
    booster = lightgbm.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5}, data, 5)
    compatibility = sample_searcher.reader.compatibility()
    card = RankerCard("old", old, "", "", "", compatibility, {}, {})
    Ranker(booster, card).save(tmp_path / "rankers")
    ranker = Ranker.load_current(tmp_path / "rankers")
    ranker.check(compatibility)
    rows = rng.random((4, len(FEATURES)))
    assert np.allclose(ranker.predict(rows), booster.predict(rows[:, : len(old)]))
    assert ranker.contributions(rows).shape == (4, len(FEATURES) + 1)
    assert np.allclose(ranker.contributions(rows).sum(axis=1), ranker.predict(rows))
    top = sample_searcher.rank_plan(sample_searcher.plan("rank fusion", "ltr"), 5, mode="ltr", ranker=ranker)
    assert len(top.doc_ords) == 5


def test_a_profile_never_reaches_another_users_results(tmp_path, sample_index, settings):
    optimization = ["en-020", "en-022", "en-023", "en-024"]  # documents user A opened, whatever they searched
    index = clicked_index(tmp_path, sample_index, {"speed": optimization}, user="user-a")
    log = QueryLog(index)
    query_id = log.log_query("chinese", "hybrid", None, 1.0, ["zh-001"], 1, user_id="user-b")
    log.log_click(query_id, "zh-001", 1, user_id="user-b")
    searcher = Searcher.open(index, settings)
    half_life = settings.behaviour.profile_half_life_days

    def results(user: str, personalize: bool = True) -> list[tuple[str, float, tuple]]:
        profile = profile_for(searcher.reader, user, half_life) if personalize else None
        hits = searcher.search("how to make retrieval fast", 10, mode="hybrid", audience=Audience(profile)).hits
        return [(h.doc_id, round(h.score, 9), tuple(h.reasons or ())) for h in hits]

    profile_a = profile_for(searcher.reader, "user-a", half_life)
    assert profile_a.clicks == 12 and profile_a.user_hash == log.hash_id("user-a")
    assert log.profile_path(profile_a.user_hash).is_file()
    with_a = results("user-b")
    log.profile_path(profile_a.user_hash).unlink()
    assert results("user-b") == with_a  # B's results do not depend on A's profile
    assert results("user-a") != results("user-a", personalize=False)  # while A's own profile changes A's
    assert any("similar to what you read" in reasons for _, _, reasons in results("user-a"))
    assert profile_for(searcher.reader, "nobody", half_life) is None
    assert log.forget_user("user-a")["profile"] == 1
    assert profile_for(searcher.reader, "user-a", half_life) is None


def test_a_region_lifts_its_documents_and_old_indexes_still_open(tmp_path, duplicated_index, settings):
    searcher = Searcher.open(duplicated_index, settings)
    assert searcher.reader.metadata.region_of(searcher.doc_ids.index("en-001")) == "north"
    query = "ranking documents for a query"
    plain = [h.doc_id for h in searcher.search(query, 10, mode="hybrid").hits]
    lifted = searcher.search(query, 10, mode="hybrid", audience=Audience(region="north")).hits
    north = {h.doc_id for h in lifted if searcher.reader.metadata.region_of(searcher.doc_ids.index(h.doc_id))}
    assert all(h.reasons == ["in your region"] for h in lifted if h.doc_id in north)
    assert len(north) > len([d for d in plain if searcher.reader.metadata.region_of(searcher.doc_ids.index(d))])
    old = tmp_path / "old"
    shutil.copytree(duplicated_index, old)
    folder = versions_dir(old) / current_version(old)
    pq.write_table(pq.read_table(folder / "documents.parquet").drop_columns(["region"]), folder / "documents.parquet")
    manifest = Manifest.read(folder)
    manifest.files = file_inventory(folder)  # as a build before regions would have recorded it
    manifest.write(folder)
    reopened = Searcher.open(old, settings)
    assert [h.doc_id for h in reopened.search(query, 10, mode="hybrid", audience=Audience(region="north")).hits] \
        == plain


def test_the_api_personalizes_only_on_request_and_says_why(tmp_path, sample_index, settings):
    import httpx
    from api_support import api_settings, running

    index = clicked_index(tmp_path, sample_index, {"speed": ["en-020", "en-022", "en-023", "en-024"]}, user="user-a")
    with running(api_settings(settings, index)) as base:
        search = {"q": "how to make retrieval fast", "mode": "hybrid", "k": 10, "user_id": "user-a"}
        refused = httpx.post(f"{base}/v1/search", json={**search, "user_id": None, "personalize": True}, timeout=60)
        assert refused.status_code == 400 and "personalize" in refused.text
        plain = httpx.post(f"{base}/v1/search", json=search, timeout=60).json()["results"]
        mine = httpx.post(f"{base}/v1/search", json={**search, "personalize": True}, timeout=60).json()["results"]
    assert all("similar to what you read" not in hit.get("reasons", []) for hit in plain)
    assert any("similar to what you read" in hit.get("reasons", []) for hit in mine)


def test_search_command_takes_a_region_and_prints_reasons(duplicated_index, capsys):
    assert main(["search", "ranking documents for a query", "--index", str(duplicated_index), "--mode", "hybrid",
                 "--region", "north", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert any(hit.get("reasons") == ["in your region"] for hit in hits)


def test_the_click_graph_weighs_by_debiased_relevance_where_the_click_model_table_exists(tmp_path):
    import numpy as np
    import pyarrow as pa

    from pipeline.behaviour.clickmodels import BEHAVIOUR_DIR
    from pipeline.behaviour.graph import ClickGraph
    from pipeline.schemas import CLICK_RELEVANCE

    log = QueryLog(tmp_path)
    for _ in range(4):
        query_id = log.log_query("Vector Search", "hybrid", None, 1.0, ["a", "b"], 2)
        log.log_click(query_id, "b", 2)
    terms = str.split
    raw = ClickGraph.load(tmp_path, {"a": 0, "b": 1}, terms)
    assert raw.source == "ctr" and raw.query_docs == {"vector search": {1: pytest.approx(5 / 8 - 0.25)}}
    (tmp_path / BEHAVIOUR_DIR).mkdir()
    pq.write_table(pa.table({"model": ["pbm", "pbm", "ctr"], "query": ["vector search"] * 3, "doc_id": ["a", "b", "b"],
                             "relevance": [0.1, 0.9, 0.6], "impressions": [4, 4, 4], "clicks": [0, 4, 4]},
                            schema=CLICK_RELEVANCE), tmp_path / BEHAVIOUR_DIR / "relevance.parquet")
    debiased = ClickGraph.load(tmp_path, {"a": 0, "b": 1}, terms)
    assert debiased.source == "pbm" and debiased.query_docs == {"vector search": {1: pytest.approx(0.65)}}
    # A past query is also reached through its vector: an encoder that maps it next to the new query's vector.
    encode = lambda texts: np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)
    assert debiased.recall("nearest neighbours", ["nearest", "neighbours"]) == {}
    found = debiased.recall("nearest neighbours", ["nearest", "neighbours"], np.array([0.96, 0.28]), encode)
    assert list(found) == [1] and found[1].weight == pytest.approx(0.96 * 0.65)
    assert found[1].via == "Vector Search"
    assert ClickGraph.load(tmp_path / "nothing", {"a": 0, "b": 1}, terms).empty


def test_a_searcher_reads_new_clicks_into_its_graph_when_refreshed(tmp_path, sample_index, settings):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    searcher = Searcher.open(index, settings)
    assert searcher.click_graph.empty
    log_clicks(index, {"Reciprocal rank fusion": ["zh-011"]})
    assert searcher.click_graph.empty  # a searcher alone never re-reads: runs over it stay reproducible
    assert searcher.refresh_click_graph()
    assert "zh-011" in [searcher.doc_ids[d] for d in searcher.click_graph.query_docs["reciprocal rank fusion"]]
    assert not searcher.refresh_click_graph()  # nothing new since


def test_clicks_newer_than_the_click_model_fit_join_the_graph_at_once(tmp_path, sample_index, settings):
    index = clicked_index(tmp_path, sample_index, {"Reciprocal rank fusion": ["zh-011"]})
    assert main(["click-models", "--index", str(index)]) == 0
    searcher = Searcher.open(index, settings)
    assert searcher.click_graph.source == "pbm"
    log_clicks(index, {"vector search": ["en-015"]})  # after the fit, which knows nothing of it
    assert searcher.refresh_click_graph()
    graph = searcher.click_graph
    assert set(graph.query_docs) == {"reciprocal rank fusion", "vector search"}
    assert graph.query_docs["vector search"] == {searcher.reader.ordinals["en-015"]: pytest.approx(
        (3 + 1) / (3 + 1 + 3) - settings.behaviour.prior_mean)}  # 3 clicks on 3 impressions, smoothed
