"""What every page shares: where the index is, opening it (with a clear message when that fails), and escaping.

The UI is a face over `pipeline/`: no search logic lives here. The index folder comes from the environment
variable SOUSUO_INDEX (set by `sousuo ui --index DIR`), or from `--index DIR` after `--` on the
`streamlit run` command line. Settings are `pipeline.config.Settings()` (sousuo.toml and SOUSUO_* variables).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

import streamlit as st

from app.launch import INDEX_ENV
from pipeline.config import Settings
from pipeline.errors import SousuoError
from pipeline.index.store import current_version, resolve_version_dir
from pipeline.io import CURRENT_POINTER

ROOT = Path(__file__).resolve().parents[1]
APP_TITLE = "搜索 sousuo"

# Markdown punctuation that could format, link or inject: escaped with a backslash wherever user or document
# text reaches st.markdown / st.caption (HTML is never enabled for such text).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


class IndexUnavailable(Exception):
    """The index folder is not configured, missing or unreadable; the message says what to do."""


def md(text: object, max_chars: int | None = None) -> str:
    """Text made inert for Markdown: every formatting character escaped, newlines kept as spaces."""
    value = "" if text is None else str(text)
    if max_chars is not None and len(value) > max_chars:
        value = value[:max_chars] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(value.split()))


def short(text: object, max_chars: int = 80) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= max_chars else value[: max_chars - 1] + "…"


def page(title: str, icon: str) -> None:
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=icon, layout="wide")


def _argv_index() -> str | None:
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--index" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--index="):
            return arg.split("=", 1)[1]
    return None


def index_dir() -> Path:
    """The configured index folder; raises IndexUnavailable with a helpful message when there is none."""
    value = os.environ.get(INDEX_ENV) or _argv_index()
    if not value:
        raise IndexUnavailable(
            f"No index is configured. Start the UI with `sousuo ui --index DIR`, or set {INDEX_ENV} to an index "
            "folder built by `sousuo build --corpus PATH --index DIR`."
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise IndexUnavailable(
            f"The index folder {path} does not exist. Build it with `sousuo build --corpus PATH --index {path}`."
        )
    return path


def settings() -> Settings:
    """Read afresh on every run (cheap), so SOUSUO_* variables and sousuo.toml changes apply."""
    return Settings()


def version_key(root: Path) -> tuple[str, str | None, float]:
    """What identifies the published index: publish and rollback change it, so caches follow."""
    pointer = root / CURRENT_POINTER
    mtime = pointer.stat().st_mtime if pointer.is_file() else 0.0
    return str(root.resolve()), current_version(root), mtime


@st.cache_resource(show_spinner="Opening the index…", max_entries=4)
def _open_searcher(root: str, version: str | None, _mtime: float):
    from pipeline.searcher import Searcher

    return Searcher.open(Path(root), settings())


def searcher():
    """The Searcher of the published version, its click graph read again where due (`refresh_click_graph_every`);
    raises IndexUnavailable with a clear message on any failure."""
    root = index_dir()
    try:
        resolve_version_dir(root)
        found = _open_searcher(*version_key(root))
        refresh_click_graph_every(found, found.settings.behaviour.graph_refresh_s)
        return found
    except SousuoError as error:
        raise IndexUnavailable(f"The index at {root} cannot be opened: {error}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexUnavailable(
            f"The index at {root} is damaged or incomplete ({type(error).__name__}: {error}). "
            f"Rebuild it with `sousuo build --corpus PATH --index {root}`, or publish another version."
        ) from None
    except Exception as error:  # pyarrow and numpy raise their own types on truncated files
        raise IndexUnavailable(
            f"The index at {root} could not be read ({type(error).__name__}: {error}). "
            f"Rebuild it with `sousuo build --corpus PATH --index {root}`."
        ) from None


_GRAPH_CHECKED: dict[int, float] = {}  # id of a cached Searcher → when its click graph was last looked at


def refresh_click_graph_every(found, seconds: float) -> None:
    """Read new clicks into the Searcher's click graph at most every `seconds`, as the API server does in the
    background: the UI has no thread of its own, so the page run that comes due pays for it. A log that cannot be
    read keeps the graph already read."""
    now = time.monotonic()
    last = _GRAPH_CHECKED.setdefault(id(found), now)
    if now - last < seconds:
        return
    _GRAPH_CHECKED[id(found)] = now
    try:
        found.refresh_click_graph()
    except Exception:  # the page must still search with the graph it has
        logging.getLogger(__name__).exception("could not read the click graph again")


@st.cache_resource(show_spinner="Preparing autocomplete…", max_entries=4)
def _suggester(key: tuple, _searcher):
    from pipeline.serving.suggest import suggester_for

    return suggester_for(_searcher.reader)


@st.cache_data(ttl=30, show_spinner=False)
def _popular_queries(root: str) -> list[tuple[str, int]]:
    from pipeline.index.querylog import QueryLog

    try:
        return [(r["text"], r["searches"]) for r in QueryLog(root).top_queries(limit=200, min_results=1)]
    except Exception:  # a log that cannot be read must not break the search box
        return []


def suggester(search):
    """Autocomplete for the published version, with the popular past queries of its log."""
    root = index_dir()
    base = _suggester(version_key(root), search)
    return base.with_queries(_popular_queries(str(root)))


def show_unavailable(error: Exception) -> None:
    st.error(md(str(error)), icon=":material/error:")


def require_searcher():
    """The Searcher, or a clear message on the page and a stop: never a traceback."""
    try:
        return searcher()
    except IndexUnavailable as error:
        show_unavailable(error)
        st.stop()


def require_index_dir() -> Path:
    try:
        return index_dir()
    except IndexUnavailable as error:
        show_unavailable(error)
        st.stop()


CSS = """
<style>
.ss-title { font-size: 1.15rem; font-weight: 600; margin-bottom: 0.2rem; }
.ss-snippet { color: #333; line-height: 1.5; }
.ss-title mark, .ss-snippet mark { background: #ffe58a; padding: 0 0.1em; border-radius: 2px; }
</style>
"""


def style() -> None:
    """Static CSS for results: no data goes into it."""
    st.markdown(CSS, unsafe_allow_html=True)
