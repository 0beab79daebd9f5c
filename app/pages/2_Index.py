"""Index: versions and their build history, artifacts, per-language counts, top terms; publish and roll back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common
from pipeline.errors import SousuoError
from pipeline.index.store import (
    Manifest,
    current_version,
    list_versions,
    publish,
    versions_dir,
)
from pipeline.io import CURRENT_POINTER
from pipeline.retrieval.weights import FUSION_DIR
from pipeline.serving.sql import SqlSession

common.page("Index", ":material/inventory_2:")
st.title("Index versions")

root = common.require_index_dir()

flash = st.session_state.pop("index_flash", None)
if flash:
    st.success(common.md(flash), icon=":material/check_circle:")

versions = list_versions(root)
current = current_version(root)
if not versions:
    common.show_unavailable(common.IndexUnavailable(
        f"{root} holds no index versions. Build one with `sousuo build --corpus PATH --index {root}`."))
    st.stop()
if current not in versions:
    st.warning(f"No valid published version (CURRENT = {common.md(current)}): publish one below.")


def read_manifest(version: str) -> Manifest | None:
    try:
        return Manifest.read(versions_dir(root) / version)
    except (SousuoError, OSError, TypeError, ValueError):
        return None


manifests = {v: read_manifest(v) for v in versions}

# -- versions and build history -------------------------------------------------------------------------

rows, stages = [], []
for version, manifest in manifests.items():
    if manifest is None:
        rows.append({"version": version, "published": version == current, "status": "unreadable manifest"})
        continue
    dense = manifest.dense or {}
    changes = manifest.changes
    rows.append({
        "version": version,
        "published": version == current,
        "created_at": manifest.created_at,
        "parent": manifest.parent,
        "docs": manifest.doc_count,
        "terms": manifest.term_count,
        "quarantined": manifest.quarantined,
        "dense model": dense.get("model_id"),
        "ann": (dense.get("ann") or {}).get("kind"),
        "kind of build": (f"update +{changes['added']} ~{changes['changed']} -{changes['deleted']}" if changes
                          else "full"),
        "ann update": (dense.get("update") or {}).get("mode", "built") if dense else None,
        "build s": round(sum(manifest.stages.values()), 2),
        "sources": ", ".join(manifest.sources),
    })
    stages.extend({"version": version, "stage": name, "seconds": seconds} for name, seconds in manifest.stages.items())

st.subheader("Versions")
st.dataframe(pd.DataFrame(rows), hide_index=True)
if stages:
    st.caption("Build history: seconds per stage of each version")
    st.bar_chart(pd.DataFrame(stages), x="version", y="seconds", color="stage", horizontal=True, height=220)

# -- publish and roll back, behind a confirmation -----------------------------------------------------

st.subheader("Publish or roll back")
default = versions.index(current) if current in versions else len(versions) - 1
chosen = st.selectbox("Version", versions, index=default, key="chosen_version",
                      format_func=lambda v: v + ("  ← published" if v == current else ""))
older = [v for v in versions if current is None or v < current]
left, right = st.columns(2)
if left.button("Publish this version", key="publish", disabled=chosen == current, icon=":material/publish:"):
    st.session_state["index_confirm"] = ("publish", chosen)
if right.button("Roll back to the previous version", key="rollback", disabled=not older, icon=":material/history:"):
    st.session_state["index_confirm"] = ("rollback", older[-1])

pending = st.session_state.get("index_confirm")
if pending:
    action, target = pending
    verb = "Publish" if action == "publish" else "Roll back to"
    st.warning(f"{verb} version {common.md(target)}? Every search switches to it at once.", icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button(common.md(f"Yes, {verb.lower()} {target}"), key="confirm_yes", type="primary"):
        st.session_state.pop("index_confirm", None)
        try:
            publish(root, target)
            st.session_state["index_flash"] = f"Version {target} is now published."
        except (SousuoError, OSError) as error:
            st.session_state["index_flash"] = f"Could not publish {target}: {error}"
        st.rerun()
    if no.button("Cancel", key="confirm_no"):
        st.session_state.pop("index_confirm", None)
        st.rerun()

# -- one version in detail -------------------------------------------------------------------------------

st.subheader(f"Version {chosen}")
folder = versions_dir(root) / chosen
manifest = manifests.get(chosen)
if manifest is None:
    st.error(f"The manifest of {common.md(chosen)} cannot be read: this version is damaged.")
    st.stop()

a, b, c, d = st.columns(4)
a.metric("Documents", f"{manifest.doc_count:,}")
b.metric("Terms", f"{manifest.term_count:,}")
c.metric("Quarantined", f"{manifest.quarantined:,}")
d.metric("Dense passages", f"{(manifest.dense or {}).get('passages', 0):,}")
if manifest.dense:
    ann = (manifest.dense.get("ann") or {}).get("kind")
    dead = (manifest.dense.get("update") or {}).get("dead_slots", 0)
    awaiting_merge = f", {dead:,} removed passages awaiting a merge" if dead else ""
    st.caption(f"Dense branch: {common.md(manifest.dense.get('model_id'))}, {manifest.dense.get('dim')} dimensions, "
               f"ANN index {common.md(ann)}, recall@10 {manifest.dense.get('recall_at_10')}{awaiting_merge}.")
    choice = manifest.dense.get("choice")
    if choice:
        st.caption(f"Encoder chosen by dense.encoder = {common.md(choice['configured'])} (teacher "
                   f"{common.md(choice['teacher'])}): {common.md(choice['reason'])}.")


@st.cache_data(max_entries=16, show_spinner="Reading the index with DuckDB…")
def language_stats(version_folder: str) -> dict:
    with SqlSession(Path(version_folder)) as session:
        def table(sql: str) -> pd.DataFrame:
            columns, rows = session.fetch(sql)
            return pd.DataFrame(rows, columns=columns)

        return {
            "docs": table(
                "SELECT coalesce(lang, '?') AS lang, count(*) AS docs FROM documents GROUP BY ALL ORDER BY docs DESC"
            ),
            "terms": table(
                "SELECT coalesce(d.lang, '?') AS lang, count(DISTINCT p.term_id) AS terms, sum(p.tf) AS tokens "
                "FROM postings p JOIN documents d ON d.doc_ord = p.doc_ord WHERE p.field = 'text' "
                "GROUP BY ALL ORDER BY terms DESC"
            ),
            "top": table("SELECT term, df, cf FROM terms WHERE field = 'text' ORDER BY df DESC, term LIMIT 25"),
            "top_by_lang": table(
                "SELECT lang, term, df FROM (SELECT coalesce(d.lang, '?') AS lang, v.term AS term, count(*) AS df "
                "FROM postings p JOIN documents d ON d.doc_ord = p.doc_ord JOIN vocabulary v USING (term_id) "
                "WHERE p.field = 'text' GROUP BY 1, 2) "
                "QUALIFY row_number() OVER (PARTITION BY lang ORDER BY df DESC, term) <= 10 ORDER BY lang, df DESC"
            ),
        }


try:
    stats = language_stats(str(folder))
except Exception as error:  # damaged Parquet: a message, not a traceback
    st.error(f"The artifacts of {common.md(chosen)} cannot be read: {common.md(error, 300)}")
    stats = None

if stats:
    left, right = st.columns(2)
    with left:
        st.markdown("**Documents and terms per language**")
        per_lang = stats["docs"].merge(stats["terms"], on="lang", how="outer").fillna(0)
        docs_chart, terms_chart = st.columns(2)
        with docs_chart:
            st.bar_chart(per_lang, x="lang", y="docs", height=220)
        with terms_chart:
            st.bar_chart(per_lang, x="lang", y="terms", height=220, color="#7fb3e6")
        st.dataframe(per_lang, hide_index=True)
    with right:
        st.markdown("**Top terms by document frequency**")
        st.bar_chart(stats["top"], x="term", y="df", sort="-df", height=260)
        st.dataframe(stats["top"], hide_index=True, height=200)
    st.markdown("**Top terms per language**")
    st.dataframe(stats["top_by_lang"], hide_index=True)

with st.expander("Manifest"):
    st.json(json.loads((folder / "manifest.json").read_text()))

with st.expander("Artifacts"):
    files = [{"file": str(p.relative_to(folder)), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()]
    st.dataframe(pd.DataFrame(files), hide_index=True)
    st.caption(f"{sum(f['bytes'] for f in files) / 1e6:.1f} MB in {len(files)} files")

rankers = sorted((root / "rankers").glob("*/ranker.json")) if (root / "rankers").is_dir() else []
tuned = sorted((root / FUSION_DIR).glob("*/*.json")) if (root / FUSION_DIR).is_dir() else []
if rankers or tuned:
    st.subheader("Trained artifacts")
    if rankers:
        cards = []
        for path in rankers:
            try:
                card = json.loads(path.read_text())
                cards.append({"model": card.get("model_id"), "created_at": card.get("created_at"),
                              "trained on": card.get("trained_on"),
                              **{k: v for k, v in (card.get("metrics") or {}).items()}})
            except (OSError, ValueError):
                cards.append({"model": path.parent.name, "created_at": "unreadable"})
        st.markdown("**Learned rankers**")
        st.dataframe(pd.DataFrame(cards), hide_index=True)
    for path in tuned:
        try:
            published = (path.parent / CURRENT_POINTER).is_file() and \
                (path.parent / CURRENT_POINTER).read_text().strip() == path.stem
            st.markdown(f"**Tuned fusion weights** ({common.md(path.parent.name)}, {common.md(path.stem)}"
                        f"{', published' if published else ''})")
            st.json(json.loads(path.read_text()))
        except (OSError, ValueError):
            st.caption(f"{common.md(path.name)} cannot be read.")
