"""Search: query box with autocomplete (pinyin too), modes, faceted filters, explained results, query logging."""

from __future__ import annotations

import hashlib
import html
import math
import sys
import uuid
from datetime import UTC, datetime, time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from app import common
from pipeline.behaviour.experiments import ExperimentStore
from pipeline.behaviour.interleaving import INTERLEAVED_ARM
from pipeline.constants import MAX_K, MAX_QUERY_CHARS
from pipeline.errors import QuerySyntaxError, SousuoError
from pipeline.index.querylog import QueryLog, filters_json
from pipeline.retrieval.channels import audience_for
from pipeline.search.facets import FACET_FIELDS, value_counts
from pipeline.search.filters import Filters
from pipeline.serving.interleave import Rankers, assigned, interleaved_search, search_seed

PAGE_SIZE = 10
MODES = {"bm25": "BM25", "dense": "Dense", "hybrid": "Hybrid", "ltr": "Hybrid + ranker"}
NO_RANKER = ("This index has no learned ranker yet, so results are ranked by hybrid fusion of keywords and meaning. "
             "To add one, train it on judged queries: `sousuo train --index INDEX_FOLDER --dataset JUDGED_QUERIES "
             "--tune-fusion` (judged queries in BEIR layout).")

common.page("Search", ":material/search:")
common.style()
st.title("搜索 sousuo")

searcher = common.require_searcher()
root = common.index_dir()
version = common.version_key(root)
documents = searcher.reader.version.documents
has_ranker = searcher.has_ranker
# Without a ranker the page starts in hybrid, and the sidebar says how to train one, once, not on every query.
default_mode = "ltr" if has_ranker else "hybrid"


def visitor() -> dict[str, str]:
    """The anonymous ids logged (as salted hashes) with each search and click: the user's is kept in the page's URL
    (?uid=…) so it survives a reload, the session's lives as long as this browser tab's Streamlit session."""
    if not st.query_params.get("uid"):
        st.query_params["uid"] = uuid.uuid4().hex
    return {"user_id": st.query_params["uid"], "session_id": st.session_state.setdefault("session_id", uuid.uuid4().hex)}


# -- callbacks: they run before the page, so they may set widget values ---------------------------------------


def set_query(text: str) -> None:
    st.session_state["q"] = text


def pick_suggestion() -> None:
    picked = st.session_state.get("suggestion")
    if picked:
        st.session_state["q"] = picked
    st.session_state["suggestion"] = None


def open_result(query_id: str | None, doc_id: str, position: int) -> None:
    """A click on a result: logged with its position, and the document opens below it."""
    opened = st.session_state.setdefault("opened", set())
    if doc_id in opened:
        opened.discard(doc_id)
        return
    opened.add(doc_id)
    if query_id:
        try:
            QueryLog(root).log_click(query_id, doc_id, position, **visitor())
        except OSError as error:
            st.session_state["log_problem"] = f"The click could not be logged: {error}"


# -- facets -------------------------------------------------------------------------------------------


@st.cache_data(max_entries=128, show_spinner=False)
def facet_counts(version_key: tuple, query: str) -> dict:
    """Counts per source, language and tag over the documents that match the query's words (all documents for
    an empty query), and those documents' dates."""
    search = common.searcher()
    docs = np.arange(documents.num_rows)
    if query.strip():
        try:
            docs = search.rank(query, k=MAX_K, mode="bm25").doc_ords
        except QuerySyntaxError:
            docs = search.rank(query, k=MAX_K, mode="bm25", syntax=False).doc_ords
    rows = documents.take(pa.array(docs, type=pa.int64()))
    # The same counts as the API's facets: one implementation for both.
    counts = {field: dict(value_counts(search.reader.metadata, docs, field, size=sys.maxsize)) for field in FACET_FIELDS}
    counts["dates"] = [d.date() for d in rows.column("published_at").to_pylist() if d is not None]
    counts["matches"] = rows.num_rows
    return counts


@st.cache_data(max_entries=8, show_spinner=False)
def corpus_values(version_key: tuple) -> dict:
    values = {}
    for column in ("source", "lang"):
        values[column] = sorted(v for v in pc.unique(documents.column(column)).to_pylist() if v is not None)
    values["tags"] = sorted(v for v in pc.unique(pc.list_flatten(documents.column("tags"))).to_pylist() if v)
    dated = [d for d in documents.column("published_at").to_pylist() if d is not None]
    values["dates"] = (min(dated).date(), max(dated).date()) if dated else None
    return values


# -- the query box and autocomplete --------------------------------------------------------------------

query = st.text_input(
    "Search",
    key="q",
    type="search",
    live="600ms",
    placeholder="Search in English or 中文 — pinyin works for autocomplete: xiangliang, xljs",
    label_visibility="collapsed",
)
query = query or ""
try:
    completer = common.suggester(searcher)
except Exception as error:  # autocomplete is a help, never a reason for the page to fail
    completer = None
    st.caption(f"Autocomplete is unavailable: {common.md(error, 200)}")

if completer is not None:
    suggestions = completer.complete(query, limit=8)
    if suggestions:
        kinds = {s.text: s.kind for s in suggestions}
        st.pills(
            "Popular searches" if not query.strip() else "Suggestions",
            [s.text for s in suggestions],
            key="suggestion",
            on_change=pick_suggestion,
            format_func=lambda text: (":material/history: " if kinds.get(text) == "query" else "")
        + common.md(common.short(text, 60)),
        )

# -- sidebar: mode and filters --------------------------------------------------------------------------

values = corpus_values(version)
counts = facet_counts(version, query[:MAX_QUERY_CHARS])


def with_count(facet: str):
    return lambda value: f"{value} ({counts[facet].get(value, 0)})"


with st.sidebar:
    mode = st.radio("Ranking", list(MODES), index=list(MODES).index(default_mode), format_func=MODES.get,
                    key="mode", help="Hybrid + ranker re-orders the fused candidates with the learned ranker.")
    if not has_ranker:
        st.caption(NO_RANKER)
    st.subheader("Filters")
    st.caption(f"Counts: documents matching the query's words ({counts['matches']}).")
    sources = st.multiselect("Source", values["source"], key="f_source", format_func=with_count("source"))
    langs = st.multiselect("Language", values["lang"], key="f_lang", format_func=with_count("lang"))
    tags = st.multiselect("Tags", values["tags"], key="f_tags", format_func=with_count("tags"))
    since = until = None
    if values["dates"]:
        first, last = values["dates"]
        chosen = st.date_input("Published between", value=(first, last), min_value=first, max_value=last,
                               key="f_dates")
        if isinstance(chosen, (tuple, list)) and len(chosen) == 2:
            start, end = chosen
            if start > first:
                since = datetime.combine(start, time.min, UTC)
            if end < last:
                until = datetime.combine(end, time.max, UTC)
            in_range = sum(1 for d in counts["dates"] if start <= d <= end)
            st.caption(f"{in_range} matching documents dated in this range.")

    st.subheader("For you")
    personalize = st.toggle("Personalize", key="personalize", help="Hybrid modes: lift what is like the documents "
                            "you opened (your profile, kept under this index's query log for your anonymous id).")
    region = st.text_input("Region", key="region", max_chars=100, help="Hybrid modes: lift documents of this "
                           "region.").strip() or None

filters = Filters(sources=tuple(sources), langs=tuple(langs), tags=tuple(tags), since=since, until=until)

if not query.strip():
    manifest = searcher.reader.version.manifest
    st.info(
        f"{manifest.doc_count} documents and {manifest.term_count} terms in version {common.md(manifest.version)}. "
        "Type a query in English or Chinese; `AND`, `OR`, `NOT`, `-word` and \"quoted phrases\" work in BM25 mode."
    )
    st.stop()

# -- searching ------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=4)
def rankers(version_key: tuple, _searcher) -> Rankers:
    return Rankers(_searcher)


def run_experiment(text: str, wanted: str, offset: int) -> dict | None:
    """The search interleaved, when this visitor is in a running experiment on the chosen mode (docs/behaviour.md);
    every page of one search in one tab shows the same merge."""
    ids = visitor()
    experiment = assigned(ExperimentStore(root), QueryLog(root), ids["user_id"], ids["session_id"], wanted)
    if experiment is None:
        return None
    query_id = uuid.uuid4().hex
    seed = search_seed(ids["session_id"], text, filters or None)
    args = (searcher, experiment, text, query_id, rankers(version, searcher), PAGE_SIZE, offset, filters or None)
    try:
        result = interleaved_search(*args, explain=True, seed=seed)
    except QuerySyntaxError:
        result = interleaved_search(*args, syntax=False, explain=True, seed=seed)
    response, log_problem = result.response, None
    try:
        QueryLog(root).log_query(text, wanted, filters, response.took_ms, [hit.doc_id for hit in response.hits],
                                 response.total_matches, result_offset=offset, query_id=query_id, arm=INTERLEAVED_ARM,
                                 experiment=experiment.experiment_id, result_arms=result.arms, **ids)
    except OSError as error:
        query_id, log_problem = None, f"The query log is not writable: {error}"
    return {"response": response, "mode": wanted, "notices": [], "query_id": query_id, "log_problem": log_problem}


def run_search(text: str, wanted: str, offset: int) -> dict:
    """Search with the chosen mode; the ranker falls back to hybrid, bad syntax to plain words."""
    try:
        interleaved = run_experiment(text, wanted, offset)
    except Exception as error:  # an experiment that cannot run must not take the search down
        interleaved = {"error": f"The experiment could not run: {error}"}
    if interleaved is not None and "error" not in interleaved:
        return interleaved
    notices = [interleaved["error"]] if interleaved else []

    audience = audience_for(searcher.reader, visitor()["user_id"] if personalize else None, region)

    def attempt(mode_name: str) -> tuple:
        try:
            return searcher.search(text, k=PAGE_SIZE, filters=filters or None, offset=offset, mode=mode_name,
                                   explain=True, audience=audience), mode_name
        except QuerySyntaxError as error:
            notices.append(f"Query syntax: {error}. Searched the words as plain text instead.")
            return searcher.search(text, k=PAGE_SIZE, filters=filters or None, offset=offset, mode=mode_name,
                                   explain=True, syntax=False, audience=audience), mode_name

    try:
        if wanted == "ltr" and not has_ranker:
            notices.append("No learned ranker for this index yet. Showing hybrid results instead.")
            wanted = "hybrid"
        try:
            response, used = attempt(wanted)
        except (SousuoError, ValueError) as error:
            if wanted != "ltr":
                raise
            notices.append(f"The learned ranker could not be used ({error}). Showing hybrid results instead.")
            response, used = attempt("hybrid")
    except Exception as error:  # shown as a message, never as a traceback
        return {"error": f"{MODES[wanted]} search failed: {error}"}
    query_id, log_problem = None, None
    try:
        query_id = QueryLog(root).log_query(
            text, used, filters, response.took_ms, [hit.doc_id for hit in response.hits], response.total_matches,
            result_offset=offset, ranker=searcher.ranker.card.model_id if used == "ltr" else None, **visitor(),
        )
    except OSError as error:
        log_problem = f"The query log is not writable: {error}"
    return {"response": response, "mode": used, "notices": notices, "query_id": query_id,
            "log_problem": log_problem}


base = (query, mode, filters_json(filters), version, personalize, region)
# The pagination widget's key follows the search, so a new query starts again at page 1.
page_key = "page-" + hashlib.sha1(repr(base).encode()).hexdigest()[:12]
if st.session_state.get("base") != base:
    st.session_state["base"] = base
    st.session_state["opened"] = set()
page_number = int(st.session_state.get(page_key) or 1)
key = base + (page_number,)
if st.session_state.get("result_key") != key:
    with st.spinner("Searching…"):
        st.session_state["result"] = run_search(query, mode, (page_number - 1) * PAGE_SIZE)
    st.session_state["result_key"] = key
result = st.session_state["result"]

if "error" in result:
    st.error(common.md(result["error"], 500), icon=":material/warning:")
    st.stop()

response = result["response"]
total = response.total_matches
pages = max(1, math.ceil(min(total, MAX_K) / PAGE_SIZE))
offset = (page_number - 1) * PAGE_SIZE

for notice in result["notices"]:
    st.info(common.md(notice, 500), icon=":material/info:")
for problem in (result.get("log_problem"), st.session_state.pop("log_problem", None)):
    if problem:
        st.caption(common.md(problem, 300))

st.caption(
    f"{total:,} results · {response.took_ms:.0f} ms · {MODES[result['mode']]}"
    + (f" · page {page_number} of {pages}" if pages > 1 else "")
)

notes = dict.fromkeys(note for hit in response.hits[:1] for note in (hit.explanation or {}).get("notes", []))
for note in notes:
    st.info(common.md(note, 300), icon=":material/translate:")

corrections = completer.did_you_mean(query, force=total == 0) if completer is not None else []
if corrections:
    columns = st.columns([2] + [3] * len(corrections) + [max(1, 8 - 3 * len(corrections))])
    columns[0].markdown("**Did you mean:**")
    for column, correction in zip(columns[1:], corrections):
        column.button(common.md(common.short(correction, 60)), key=f"dym-{correction}", on_click=set_query,
                      args=(correction,), type="tertiary", icon=":material/spellcheck:")

if not response.hits:
    st.warning(f"No documents match “{common.md(query, 80)}”" + (" with these filters." if filters else "."))


def show_explanation(hit) -> None:
    explanation = hit.explanation or {}
    if explanation.get("arm"):
        st.caption(f"Interleaving experiment: placed by the {common.md(explanation['arm'])} ranker "
                   f"({common.md(explanation.get('ranker'))}).")
    branches = explanation.get("branches") or {}
    if branches:
        st.markdown("**Found by**")
        st.dataframe(
            pd.DataFrame([{"branch": name, "rank": info.get("rank"), "score": info.get("score")}
                          for name, info in branches.items()]),
            hide_index=True,
        )
    else:
        st.caption("No recall branch ranked it on its own.")
    matched = explanation.get("matched_terms") or hit.matched_terms
    st.markdown("**Matched terms:** " + (", ".join(common.md(t) for t in matched) if matched else "none"))
    choice = explanation.get("fusion_choice")
    if choice:
        weights = explanation.get("query_weights") or {}
        st.markdown(f"**Fusion for this query:** {common.md(choice, 300)}")
        st.caption("Weights: " + ", ".join(f"{common.md(b)} {w:.3g}" for b, w in weights.items() if w))
    numbers = [(label, explanation.get(name)) for label, name in
               (("fused score", "fused_score"), ("model score", "model_score"), ("bias", "bias"))]
    numbers = [f"{label} {value:.4f}" for label, value in numbers if isinstance(value, (int, float))]
    if numbers:
        st.caption(" · ".join(numbers))
    contributions = explanation.get("contributions") or []
    if contributions:
        st.markdown("**Top feature contributions** (they add up, with the bias, to the model score)")
        frame = pd.DataFrame([{"feature": c["feature"], "contribution": c["contribution"]} for c in contributions])
        st.bar_chart(frame, x="feature", y="contribution", horizontal=True, sort=False, height=260)


SIMILAR_SHOWN = 5
SOURCE_WORDS = {"dense": "close in meaning", "bm25": "shares its key terms", "co_clicks": "opened in the same sessions"}


def show_similar(doc_ord: int) -> None:
    """Related documents under an opened one: dense neighbours, its top terms and co-clicks (`sousuo similar`)."""
    found = searcher.similar(doc_ord, SIMILAR_SHOWN)
    if not len(found.doc_ords):
        return
    st.markdown("**Similar**")
    for d, sources in zip(found.doc_ords.tolist(), found.sources):
        row = documents.slice(d, 1).to_pylist()[0]
        why = ", ".join(SOURCE_WORDS.get(s, s) for s in sources)
        st.caption(f"{common.md(common.short(row.get('title') or row['doc_id'], 120))} · {common.md(row['doc_id'])}"
                   f" · {why}")


for i, hit in enumerate(response.hits):
    position = offset + i + 1
    with st.container(border=True, key=f"hit-{position}"):
        # Only the library's escaped HTML (matches in <mark>) is rendered as HTML.
        title = hit.title_html or html.escape(hit.title or "") or "(untitled)"
        st.markdown(f'<div class="ss-title">{position}. {title}</div>', unsafe_allow_html=True)
        if hit.snippet:
            st.markdown(f'<div class="ss-snippet">{hit.snippet}</div>', unsafe_allow_html=True)
        when = hit.published_at.date().isoformat() if hit.published_at else "undated"
        meta = [hit.source or "unknown source", hit.lang or "", when, ", ".join(hit.tags), f"score {hit.score:.4f}",
                hit.doc_id]
        st.caption(" · ".join(common.md(part, 200) for part in meta if part))
        opened = hit.doc_id in st.session_state.get("opened", set())
        left, right = st.columns([1, 6], vertical_alignment="top")
        left.button("Close" if opened else "Open", key=f"open-{position}", on_click=open_result,
                    args=(result["query_id"], hit.doc_id, position), icon=":material/description:",
                    help="Opens the document; the click is logged with its position")
        with right.expander("Why this result?", icon=":material/help:"):
            show_explanation(hit)
        if hit.reasons:
            right.caption(" · ".join(common.md(reason, 200) for reason in hit.reasons))
        if opened:
            row = documents.slice(hit.doc_ord, 1).to_pylist()[0]
            st.markdown(common.md(row.get("body"), 5_000))
            if row.get("url"):
                st.caption(common.md(row["url"], 300))
            show_similar(hit.doc_ord)

if pages > 1:
    st.pagination(pages, key=page_key, max_visible_pages=7)
