"""Experiments: each interleaving experiment's wins, losses and ties with its sign test, beside the click model's
position curve."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import streamlit as st

from app import common
from pipeline.behaviour.clickmodels import BEHAVIOUR_DIR, TABLES
from pipeline.behaviour.experiments import report

common.page("Experiments", ":material/science:")
st.title("Interleaving experiments")

root = common.require_index_dir()
st.caption("Team-draft interleaving: each result of a visitor in an experiment's share is placed by the control or "
           "the candidate ranker, and each click is credited to the one that placed it. A search is a win for the "
           "candidate when its results drew more clicks, a loss when fewer. The p-value is the two-sided sign test of "
           "wins against losses (`sousuo sql` view `interleaving_report`).")

try:
    rows = report(root)
except Exception as error:  # a damaged log or experiment file: say so, do not crash
    common.show_unavailable(common.IndexUnavailable(f"The experiments of {root} cannot be read: {error}"))
    st.stop()

if not rows:
    st.info("No experiment yet. Start one against the served ranker with `sousuo experiment start ID --index "
            f"{common.md(root)} --candidate MODEL_ID --share 0.1`; searches of visitors in its share are then "
            "interleaved on the Search page and in the API.")
    st.stop()

frame = pd.DataFrame(rows)
columns = ["experiment", "control", "candidate", "share", "start_at", "end_at", "impressions", "wins", "losses",
           "ties", "no_clicks", "win_share", "p_value", "preferred"]
st.dataframe(frame[columns], hide_index=True)

names = [row["experiment"] for row in rows]
chosen = st.selectbox("Experiment", names, key="experiment", format_func=lambda name: common.short(name, 64))
row = next(r for r in rows if r["experiment"] == chosen)

left, right = st.columns(2)
with left:
    st.subheader(f"Outcome: {common.md(row['preferred'])}")
    a, b, c, d = st.columns(4)
    a.metric("Wins", f"{row['wins']:,}")
    b.metric("Losses", f"{row['losses']:,}")
    c.metric("Ties", f"{row['ties']:,}")
    d.metric("p-value", f"{row['p_value']:.3g}")
    st.caption(f"Candidate {common.md(row['candidate'])} against control {common.md(row['control'])}, "
               f"{row['impressions']:,} interleaved searches ({row['no_clicks']:,} without clicks).")
    outcomes = pd.DataFrame({"outcome": ["wins", "losses", "ties"],
                             "searches": [row["wins"], row["losses"], row["ties"]]})
    st.bar_chart(outcomes, x="outcome", y="searches", sort=False, height=260)
with right:
    st.subheader("Click model: examination by position")
    path = root / BEHAVIOUR_DIR / TABLES["click_propensities"][0]
    if path.is_file():
        curve = pq.read_table(path).to_pandas()
        if curve.empty:
            st.info("The fitted click models give no position curve.")
        else:
            st.line_chart(curve, x="position", y="propensity", color="model", height=300)
            st.caption("P(a result is looked at) by position, relative to position 1: clicks low on the page are "
                       "rarer because fewer users get there, which interleaving cancels by mixing both rankers into "
                       "every position.")
    else:
        st.info(f"No click model fitted yet: run `sousuo click-models --index {common.md(root)}`.")
