"""Forward index (正排): doc ordinal → per-field token ids, positions and character spans, as CSR arrays."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schemas
from ..io import csr_lists, load_arrays, run_gather_index, save_arrays
from ..text.analysis import Analyzer

# Fields analysed from the documents table. The inverted index adds `text`, their concatenation.
STORED_FIELDS = ("title", "body")
_ARRAYS = ("indptr", "term_ids", "positions", "starts", "ends")


@dataclass
class ForwardField:
    """Tokens of one field for every document; doc d owns the slice indptr[d]:indptr[d + 1]."""

    indptr: np.ndarray  # int64, n_docs + 1
    term_ids: np.ndarray  # int32
    positions: np.ndarray  # int32
    starts: np.ndarray  # int32, character offsets into the stored field text
    ends: np.ndarray  # int32

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr).astype(np.int32)

    @classmethod
    def interleave(cls, old: ForwardField, old_ords: np.ndarray, new: ForwardField) -> ForwardField:
        """Documents in a new order: document i is `old`'s document old_ords[i], or where that is -1, the next
        document of `new`."""
        taken = old_ords >= 0
        lengths = np.empty(len(old_ords), dtype=np.int64)
        starts = np.empty(len(old_ords), dtype=np.int64)
        lengths[taken], lengths[~taken] = np.diff(old.indptr)[old_ords[taken]], np.diff(new.indptr)
        starts[taken], starts[~taken] = old.indptr[old_ords[taken]], len(old.term_ids) + new.indptr[:-1]
        index = run_gather_index(starts, lengths)
        return cls(np.r_[0, np.cumsum(lengths)].astype(np.int64),
                   *(np.concatenate([getattr(old, key), getattr(new, key)])[index] for key in _ARRAYS[1:]))

    def doc_slice(self, doc_ord: int) -> slice:
        return slice(int(self.indptr[doc_ord]), int(self.indptr[doc_ord + 1]))

    def save(self, folder: Path, name: str) -> None:
        save_arrays(self, folder, name, _ARRAYS)

    @classmethod
    def load(cls, folder: Path, name: str, mmap: bool = True) -> ForwardField:
        return cls(*load_arrays(folder, name, _ARRAYS, mmap))


class _FieldBuffers:
    def __init__(self) -> None:
        self.indptr = array("q", [0])
        self.term_ids = array("i")
        self.positions = array("i")
        self.starts = array("i")
        self.ends = array("i")

    def freeze(self) -> ForwardField:
        return ForwardField(*(np.frombuffer(getattr(self, name), dtype=_dtype(name)).copy() for name in _ARRAYS))


def _dtype(name: str):
    return np.int64 if name == "indptr" else np.int32


class Vocabulary:
    """Term ↔ term id; ids are dense and assigned in order of first appearance."""

    def __init__(self, terms: Iterable[str] = ()):
        self.terms: list[str] = list(terms)
        self.ids: dict[str, int] = {term: index for index, term in enumerate(self.terms)}

    def __len__(self) -> int:
        return len(self.terms)

    def add_all(self, terms: list[str]) -> list[int]:
        ids = self.ids
        get = ids.get
        out = []
        for term in terms:
            term_id = get(term)
            if term_id is None:
                term_id = ids[term] = len(self.terms)
                self.terms.append(term)
            out.append(term_id)
        return out

    def lookup(self, terms: Iterable[str]) -> list[int | None]:
        return [self.ids.get(term) for term in terms]

    def save(self, path: Path) -> None:
        table = pa.table({"term_id": pa.array(range(len(self.terms)), pa.int32()), "term": self.terms})
        pq.write_table(table, path)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(pq.read_table(path, columns=["term"]).column("term").to_pylist())


@dataclass
class ForwardIndex:
    fields: dict[str, ForwardField]

    @classmethod
    def build(
        cls,
        documents: pa.Table,
        analyzer: Analyzer,
        vocabulary: Vocabulary,
        progress: Callable[[int], None] | None = None,
    ) -> ForwardIndex:
        buffers = {name: _FieldBuffers() for name in STORED_FIELDS}
        columns = {name: documents.column(name).to_pylist() for name in STORED_FIELDS}
        for doc_ord in range(documents.num_rows):
            for name in STORED_FIELDS:
                analyzed = analyzer.analyze(columns[name][doc_ord] or "")
                buffer = buffers[name]
                buffer.term_ids.extend(vocabulary.add_all(analyzed.terms))
                buffer.positions.extend(analyzed.positions)
                buffer.starts.extend(analyzed.starts)
                buffer.ends.extend(analyzed.ends)
                buffer.indptr.append(len(buffer.term_ids))
            if progress is not None and doc_ord % 256 == 255:
                progress(256)
        if progress is not None:
            progress(documents.num_rows % 256)
        return cls({name: buffer.freeze() for name, buffer in buffers.items()})

    @property
    def n_docs(self) -> int:
        return len(next(iter(self.fields.values())).indptr) - 1

    def save(self, folder: Path, doc_ids: pa.Array) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, field in self.fields.items():
            field.save(folder, name)
        pq.write_table(self._table(doc_ids), folder / "forward.parquet")

    def _table(self, doc_ids: pa.Array) -> pa.Table:
        tables = []
        for name, field in self.fields.items():
            tables.append(
                pa.table(
                    {
                        "doc_ord": pa.array(np.arange(self.n_docs, dtype=np.int32)),
                        "doc_id": doc_ids,
                        "field": pa.array([name] * self.n_docs, pa.string()),
                        "length": pa.array(field.lengths),
                        "token_ids": csr_lists(field.indptr, field.term_ids),
                    },
                    schema=schemas.FORWARD,
                )
            )
        return pa.concat_tables(tables)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> ForwardIndex:
        return cls({name: ForwardField.load(folder, name, mmap) for name in STORED_FIELDS})
