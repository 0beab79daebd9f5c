"""SQL: read-only DuckDB over every artifact, with the documented example queries one click away."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st

from app import common
from pipeline.errors import SousuoError
from pipeline.serving.sql import SandboxViolation, SqlError, SqlSession

MAX_ROWS = 1_000
EXAMPLES_DOC = common.ROOT / "docs" / "analysis.md"

common.page("SQL", ":material/terminal:")
st.title("SQL over the artifacts")

root = common.require_index_dir()
cache_dir = Path(common.settings().cache_dir)


@st.cache_data(show_spinner=False)
def examples(path: str, mtime: float) -> list[tuple[str, str]]:
    """(title, query) of each `## N. Title` section of docs/analysis.md with a ```sql block."""
    text = Path(path).read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^##\s+(?:\d+\.\s*)?(.+?)\n(.*?)(?=^##\s|\Z)", text, re.S | re.M):
        block = re.search(r"```sql\n(.*?)```", match.group(2), re.S)
        if block:
            found.append((match.group(1).strip(), block.group(1).strip()))
    return found


def use_example(sql: str) -> None:
    st.session_state["sql"] = sql
    st.session_state["sql_run"] = True


def run_now() -> None:
    st.session_state["sql_run"] = True


try:
    session = SqlSession(root, cache_dir if cache_dir.is_dir() else None)
except (SousuoError, duckdb.Error, OSError) as error:
    common.show_unavailable(common.IndexUnavailable(f"The artifacts of {root} cannot be opened: {error}"))
    st.stop()

try:
    st.caption("Read-only: only SELECT, EXPLAIN and PRAGMA run; anything that writes, and any file but the "
               "views', is refused. Views: "
               + ", ".join(f"`{name}`" for name in session.views))
    listed = examples(str(EXAMPLES_DOC), EXAMPLES_DOC.stat().st_mtime) if EXAMPLES_DOC.is_file() else []
    if listed:
        with st.expander("Example queries from docs/analysis.md", expanded=True):
            columns = st.columns(3)
            for i, (title, sql) in enumerate(listed):
                columns[i % 3].button(common.md(f"{i + 1}. {title}"), key=f"example-{i}", on_click=use_example,
                                      args=(sql,), help=f"```sql\n{sql}\n```", width="stretch")

    st.text_area("SQL", key="sql", height=140, placeholder="SELECT lang, count(*) FROM documents GROUP BY lang")
    st.button("Run", type="primary", on_click=run_now, key="run", icon=":material/play_arrow:")

    sql = (st.session_state.get("sql") or "").strip()
    if st.session_state.pop("sql_run", False) and sql:
        try:
            columns, rows = session.fetch(sql, max_rows=MAX_ROWS + 1)
            if not columns:
                st.info("The statement ran and returned no rows.")
            else:
                st.dataframe(pd.DataFrame(rows[:MAX_ROWS], columns=columns), hide_index=True)
                st.caption(f"First {MAX_ROWS:,} rows." if len(rows) > MAX_ROWS else f"{len(rows):,} rows.")
        except SandboxViolation as error:
            st.error(f"Refused: {common.md(error)}. This page is read-only; it never changes the index "
                     "nor reads a file outside it.", icon=":material/lock:")
        except SqlError as error:
            st.error(f"DuckDB: {common.md(error, 1_000)}", icon=":material/warning:")
        except Exception as error:  # whatever DuckDB's Python layer raises, a message and never a traceback
            st.error(f"The query failed: {common.md(type(error).__name__)}: {common.md(error, 1_000)}",
                     icon=":material/warning:")
finally:
    session.close()
