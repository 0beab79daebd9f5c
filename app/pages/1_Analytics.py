"""Analytics: DuckDB over the query log — top and zero-result queries, latency percentiles, CTR by position."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common
from pipeline.index.querylog import QueryLog

common.page("Analytics", ":material/query_stats:")
st.title("Query analytics")

root = common.require_index_dir()
log = QueryLog(root)
st.caption(f"DuckDB over the Parquet query log in {common.md(log.root)}.")

try:
    totals = log.count()
except Exception as error:  # a damaged part file: say so, do not crash
    common.show_unavailable(common.IndexUnavailable(f"The query log in {log.root} cannot be read: {error}"))
    st.stop()

if totals["queries"] == 0:
    st.info("No searches logged yet. Search on the Search page and come back: every query and click is logged.")
    st.stop()


def frame(rows: list[dict], text_column: str | None = None) -> pd.DataFrame:
    data = pd.DataFrame(rows)
    if text_column and not data.empty:
        data[text_column] = data[text_column].map(lambda t: common.short(t, 60))
    return data


def bar_height(data: pd.DataFrame) -> int:
    return min(420, 70 + 28 * len(data))


top = frame(log.top_queries(limit=20), "text")
zero = frame(log.zero_result_queries(limit=20), "text")
ctr = frame(log.ctr_by_position(max_position=20))
all_zero = log.sql("SELECT count(*) AS n FROM queries WHERE result_count = 0")[0]["n"]
p50 = log.sql("SELECT quantile_cont(latency_ms, 0.5) AS p FROM queries")[0]["p"]

a, b, c, d = st.columns(4)
a.metric("Searches", f"{totals['queries']:,}")
b.metric("Clicks", f"{totals['clicks']:,}")
c.metric("Zero-result rate", f"{all_zero / totals['queries']:.1%}")
d.metric("Median latency", f"{p50:.0f} ms")

left, right = st.columns(2)
with left:
    st.subheader("Top queries")
    st.bar_chart(top, x="text", y="searches", horizontal=True, sort="-searches", height=bar_height(top))
    st.dataframe(top, hide_index=True)
with right:
    st.subheader("Zero-result queries")
    if zero.empty:
        st.success("Every logged query found something.")
    else:
        st.bar_chart(zero, x="text", y="searches", horizontal=True, sort="-searches", height=bar_height(zero),
                     color="#d9534f")
        st.dataframe(zero, hide_index=True)

st.subheader("Latency percentiles over time")
bucket = st.segmented_control("Bucket", ["minute", "hour", "day"], default="hour", key="bucket") or "hour"
latency = frame(log.latency_percentiles(bucket))
if not latency.empty:
    st.line_chart(latency, x="bucket", y=["p50_ms", "p90_ms", "p99_ms"], y_label="ms")
    st.dataframe(latency, hide_index=True)
by_mode = frame(log.latency_by_mode())
if not by_mode.empty:
    st.caption("Latency by mode")
    st.bar_chart(by_mode, x="mode", y=["p50_ms", "p90_ms", "p99_ms"], stack=False, height=260)

st.subheader("Click-through rate by position")
if ctr.empty or ctr["clicks"].sum() == 0:
    st.info("No clicks logged yet: open results on the Search page to record clicks with their positions.")
if not ctr.empty:
    st.bar_chart(ctr, x="position", y="ctr", sort=False, height=280)
    st.dataframe(ctr, hide_index=True)

clicked = frame(log.clicked_documents(limit=20))
if not clicked.empty:
    st.subheader("Most clicked documents")
    st.dataframe(clicked, hide_index=True)
