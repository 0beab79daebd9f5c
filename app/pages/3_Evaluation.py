"""Evaluation: metrics per method and dataset from the stored runs, and a per-query comparison of two methods."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st

from app import common

common.page("Evaluation", ":material/science:")
st.title("Evaluation")

cache_dir = Path(common.settings().cache_dir)
if not cache_dir.is_absolute():
    cache_dir = Path.cwd() / cache_dir
metrics_glob = cache_dir / "metrics" / "*.parquet"
st.caption(f"Metrics and runs written by `sousuo eval` under {common.md(cache_dir)}.")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _stamp(pattern: Path) -> tuple:
    return tuple(sorted((str(p), p.stat().st_mtime) for p in pattern.parent.glob(pattern.name)))


@st.cache_data(max_entries=8, show_spinner="Reading metrics…")
def load_metrics(pattern: str, stamp: tuple) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.sql(f"SELECT dataset, method, split, query_id, measure, value "
                       f"FROM read_parquet({_quote(Path(pattern))}, union_by_name = true)").df()


@st.cache_data(max_entries=32, show_spinner=False)
def load_run(path: str, query_id: str, stamp: float) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute(f"SELECT rank, doc_id, score FROM read_parquet({_quote(Path(path))}) "
                           "WHERE query_id = ? ORDER BY rank LIMIT 10", [query_id]).df()


def dataset_folder(name: str) -> Path | None:
    """The BEIR folder of a dataset, where its query texts and judgments are, if it is in a usual place."""
    for base in (common.ROOT / "data", common.ROOT / "data" / "datasets", common.ROOT.parent / "shared" / "datasets"):
        if (base / name / "queries.jsonl").is_file():
            return base / name
    return None


@st.cache_data(max_entries=8, show_spinner=False)
def queries_and_qrels(name: str, split: str) -> tuple[dict, dict]:
    folder = dataset_folder(name)
    if folder is None:
        return {}, {}
    queries, qrels = {}, {}
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                queries[str(record["_id"])] = record.get("text", "")
    path = folder / "qrels" / f"{split}.tsv"
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t"):
                if len(row) >= 3 and row[0] != "query-id":
                    qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return queries, qrels


def titles() -> dict[str, str]:
    """Titles of the UI's index, to name the documents of runs on the same corpus."""
    try:
        documents = common.searcher().reader.version.documents
    except Exception:  # the index problem is already shown at the top of the page
        return {}
    return dict(zip(documents.column("doc_id").to_pylist(), documents.column("title").to_pylist()))


try:
    common.searcher()
except common.IndexUnavailable as error:
    # Metrics live in the cache folder, so the page still works: documents just go without titles.
    st.warning(f"{common.md(error)} Documents below are shown without titles.", icon=":material/warning:")


try:
    metrics = load_metrics(str(metrics_glob), _stamp(metrics_glob)) if _stamp(metrics_glob) else pd.DataFrame()
except duckdb.Error as error:
    st.error(f"The metrics under {common.md(cache_dir)} cannot be read: {common.md(error, 300)}")
    st.stop()
if metrics.empty:
    st.info("No evaluation results yet. Run for example `sousuo eval --dataset data/sample --method bm25` and "
            "`--method ltr`, then come back.")
    st.stop()

# -- overall metrics -------------------------------------------------------------------------------------

overall = metrics[metrics["query_id"] == "all"]
measures = sorted(overall["measure"].unique())
splits = sorted(overall["split"].unique())
left, right = st.columns(2)
measure = left.selectbox("Measure", measures, index=measures.index("ndcg@10") if "ndcg@10" in measures else 0,
                         key="measure")
split = right.selectbox("Split", splits, index=splits.index("test") if "test" in splits else 0, key="split")

chosen = overall[(overall["measure"] == measure) & (overall["split"] == split)]
st.subheader(f"{measure} per method and dataset")
st.bar_chart(chosen, x="dataset", y="value", color="method", stack=False, height=340)
st.dataframe(chosen.pivot_table(index="dataset", columns="method", values="value").round(4))

# -- per-query drill-down --------------------------------------------------------------------------------

st.subheader("Per-query comparison")
per_query = metrics[(metrics["query_id"] != "all") & (metrics["split"] == split) & (metrics["measure"] == measure)]
datasets = sorted(per_query["dataset"].unique())
if not datasets:
    st.info("No per-query values for this split and measure.")
    st.stop()
dataset = st.selectbox("Dataset", datasets, key="dataset")
methods = sorted(per_query[per_query["dataset"] == dataset]["method"].unique())
if len(methods) < 2:
    st.info(f"Only {common.md(', '.join(methods))} was evaluated on {common.md(dataset)}: evaluate a second method "
            "to compare them side by side.")
    st.stop()
a_col, b_col = st.columns(2)
method_a = a_col.selectbox("Method A", methods, index=0, key="method_a")
method_b = b_col.selectbox("Method B", methods, index=1 if methods[0] == method_a else 0, key="method_b")

subset = per_query[per_query["dataset"] == dataset]
table = subset.pivot_table(index="query_id", columns="method", values="value")[[method_a, method_b]].dropna()
table = table.rename(columns={method_a: f"A: {method_a}", method_b: f"B: {method_b}"})
table["B − A"] = table.iloc[:, 1] - table.iloc[:, 0]
table = table.sort_values("B − A")
query_texts, qrels = queries_and_qrels(dataset, split)
if query_texts:
    table.insert(0, "query", [common.short(query_texts.get(q, ""), 70) for q in table.index])

better, worse = int((table["B − A"] > 0).sum()), int((table["B − A"] < 0).sum())
st.caption(f"{method_b} beats {method_a} on {better} queries, loses on {worse}, ties on {len(table) - better - worse}.")
st.bar_chart(table.reset_index(), x="query_id", y="B − A", sort=False, height=240)
st.dataframe(table.round(4))

query_id = st.selectbox("Query", list(table.index), key="drill_query",
                        format_func=lambda q: f"{q} — {common.short(query_texts.get(q, ''), 60)}" if query_texts else q)
if query_texts.get(query_id):
    st.markdown(f"**Query:** {common.md(query_texts[query_id], 500)}")
names = titles()
judged = qrels.get(query_id, {})
for column, method in zip(st.columns(2), (method_a, method_b)):
    with column:
        value = subset[(subset["query_id"] == query_id) & (subset["method"] == method)]["value"]
        st.markdown(f"**{common.md(method)}** · {measure} = {float(value.iloc[0]) if len(value) else float('nan'):.4f}")
        run_path = cache_dir / "runs" / f"{dataset}.{method}.{split}.run.parquet"
        if not run_path.is_file():
            st.caption("No stored run for this method.")
            continue
        run = load_run(str(run_path), str(query_id), run_path.stat().st_mtime)
        run.insert(2, "relevance", [judged.get(d, 0) for d in run["doc_id"]])
        if names:
            run.insert(2, "title", [common.short(names.get(d, ""), 60) for d in run["doc_id"]])
        st.dataframe(run, hide_index=True)
