"""Inverted index (倒排): term → postings (doc ordinal, tf, positions) per field, as CSR arrays and Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schemas
from ..io import csr_lists, load_arrays, run_gather_index, save_arrays
from .forward import ForwardField, ForwardIndex, Vocabulary

# The catch-all field: title then body, with a position gap so phrases never straddle the two.
TEXT_FIELD = "text"
INDEXED_FIELDS = ("title", "body", TEXT_FIELD)
_POSITION_GAP = 2
_ARRAYS = ("term_indptr", "docs", "tfs", "pos_indptr", "positions", "doc_lengths")


@dataclass
class FieldPostings:
    """Postings of one field. Term t owns postings term_indptr[t]:term_indptr[t + 1], sorted by doc;
    posting p owns positions pos_indptr[p]:pos_indptr[p + 1]."""

    term_indptr: np.ndarray  # int64, n_terms + 1
    docs: np.ndarray  # int32, doc ordinals
    tfs: np.ndarray  # int32
    pos_indptr: np.ndarray  # int64, n_postings + 1
    positions: np.ndarray  # int32
    doc_lengths: np.ndarray  # int32, tokens per document in this field

    @property
    def n_terms(self) -> int:
        return len(self.term_indptr) - 1

    @property
    def n_docs(self) -> int:
        return len(self.doc_lengths)

    @cached_property
    def avgdl(self) -> float:
        return float(self.doc_lengths.mean()) if len(self.doc_lengths) else 0.0

    def df(self, term_id: int) -> int:
        if term_id >= self.n_terms:
            return 0
        return int(self.term_indptr[term_id + 1] - self.term_indptr[term_id])

    def span(self, term_id: int) -> slice:
        if term_id >= self.n_terms:
            return slice(0, 0)
        return slice(int(self.term_indptr[term_id]), int(self.term_indptr[term_id + 1]))

    def doc_frequencies(self) -> np.ndarray:
        return np.diff(self.term_indptr)

    def collection_frequencies(self) -> np.ndarray:
        term_of_posting = np.repeat(np.arange(self.n_terms), self.doc_frequencies())
        return np.bincount(term_of_posting, weights=self.tfs, minlength=self.n_terms).astype(np.int64)

    def positions_of(self, posting: int) -> np.ndarray:
        return self.positions[self.pos_indptr[posting] : self.pos_indptr[posting + 1]]

    @classmethod
    def from_tokens(
        cls, doc_of_token: np.ndarray, term_ids: np.ndarray, positions: np.ndarray, n_docs: int, n_terms: int
    ) -> FieldPostings:
        """Group token occurrences into postings with one sort over (term, doc, position)."""
        order = np.lexsort((positions, doc_of_token, term_ids))
        terms_sorted = term_ids[order].astype(np.int64)
        docs_sorted = doc_of_token[order].astype(np.int64)
        key = terms_sorted * max(n_docs, 1) + docs_sorted
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        pos_indptr = np.r_[starts, len(key)].astype(np.int64)
        per_term = np.bincount(terms_sorted[starts], minlength=n_terms) if len(starts) else np.zeros(n_terms, np.int64)
        return cls(
            term_indptr=np.r_[0, np.cumsum(per_term)].astype(np.int64),
            docs=docs_sorted[starts].astype(np.int32),
            tfs=np.diff(pos_indptr).astype(np.int32),
            pos_indptr=pos_indptr,
            positions=positions[order].astype(np.int32),
            doc_lengths=np.bincount(doc_of_token, minlength=n_docs).astype(np.int32),
        )

    @classmethod
    def from_forward(cls, field: ForwardField, n_terms: int) -> FieldPostings:
        n_docs = len(field.indptr) - 1
        doc_of_token = np.repeat(np.arange(n_docs, dtype=np.int32), field.lengths)
        return cls.from_tokens(doc_of_token, np.asarray(field.term_ids), np.asarray(field.positions), n_docs, n_terms)

    @classmethod
    def merged(cls, old: FieldPostings, kept: np.ndarray, fresh: FieldPostings, fresh_ords: np.ndarray,
               doc_lengths: np.ndarray, n_terms: int) -> FieldPostings:
        """`old`'s postings of kept documents (old ordinal d becomes kept[d]; -1 drops it) merged with `fresh`'s
        (local ordinal j becomes fresh_ords[j]), in (term, doc) order without sorting. Kept documents must keep
        their relative order and `fresh_ords` must ascend, so that both inputs are already in that order."""
        n_docs = len(doc_lengths)
        old_terms = np.repeat(np.arange(old.n_terms, dtype=np.int64), old.doc_frequencies())
        old_docs = kept[old.docs]
        keep = old_docs >= 0
        fresh_terms = np.repeat(np.arange(fresh.n_terms, dtype=np.int64), fresh.doc_frequencies())
        fresh_docs = fresh_ords[fresh.docs]
        old_keys = old_terms[keep] * n_docs + old_docs[keep]
        at = np.searchsorted(old_keys, fresh_terms * n_docs + fresh_docs) + np.arange(len(fresh_docs))
        from_fresh = np.zeros(len(old_keys) + len(fresh_docs), dtype=bool)
        from_fresh[at] = True

        def merge(old_values, fresh_values, dtype):
            out = np.empty(len(from_fresh), dtype=dtype)
            out[~from_fresh], out[from_fresh] = old_values, fresh_values
            return out

        terms = merge(old_terms[keep], fresh_terms, np.int64)
        tfs = merge(old.tfs[keep], fresh.tfs, np.int32)
        run_starts = merge(old.pos_indptr[:-1][keep], len(old.positions) + fresh.pos_indptr[:-1], np.int64)
        positions = np.concatenate([old.positions, fresh.positions])[run_gather_index(run_starts, tfs)]
        return cls(
            term_indptr=np.r_[0, np.cumsum(np.bincount(terms, minlength=n_terms))].astype(np.int64),
            docs=merge(old_docs[keep], fresh_docs, np.int32),
            tfs=tfs,
            pos_indptr=np.r_[0, np.cumsum(tfs)].astype(np.int64),
            positions=positions.astype(np.int32),
            doc_lengths=np.asarray(doc_lengths, dtype=np.int32),
        )

    def save(self, folder: Path, name: str) -> None:
        save_arrays(self, folder, name, _ARRAYS)

    @classmethod
    def load(cls, folder: Path, name: str, mmap: bool = True) -> FieldPostings:
        return cls(*load_arrays(folder, name, _ARRAYS, mmap))


def _text_field(title: ForwardField, body: ForwardField) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token arrays of title + body as one field; body positions move past the title's last one."""
    n_docs = len(title.indptr) - 1
    title_docs = np.repeat(np.arange(n_docs, dtype=np.int32), title.lengths)
    body_docs = np.repeat(np.arange(n_docs, dtype=np.int32), body.lengths)
    title_end = np.zeros(n_docs, dtype=np.int64)
    if len(title.positions):
        np.maximum.at(title_end, title_docs, np.asarray(title.positions, dtype=np.int64) + _POSITION_GAP)
    docs = np.concatenate([title_docs, body_docs])
    terms = np.concatenate([np.asarray(title.term_ids), np.asarray(body.term_ids)])
    positions = np.concatenate([np.asarray(title.positions), np.asarray(body.positions) + title_end[body_docs]])
    return docs, terms, positions.astype(np.int32)


@dataclass
class InvertedIndex:
    fields: dict[str, FieldPostings]

    @classmethod
    def build(cls, forward: ForwardIndex, n_terms: int) -> InvertedIndex:
        fields = {name: FieldPostings.from_forward(field, n_terms) for name, field in forward.fields.items()}
        docs, terms, positions = _text_field(forward.fields["title"], forward.fields["body"])
        fields[TEXT_FIELD] = FieldPostings.from_tokens(docs, terms, positions, forward.n_docs, n_terms)
        return cls(fields)

    @classmethod
    def updated(cls, previous: InvertedIndex, kept: np.ndarray, forward: ForwardIndex, fresh: ForwardIndex,
                fresh_ords: np.ndarray, n_terms: int) -> InvertedIndex:
        """The postings `build(forward)` gives, from the previous version's postings (`kept[old_ord]` is each
        unchanged document's new ordinal, -1 for the rest) and those of the new and changed documents
        `fresh`, which sit at `fresh_ords`. Merging runs in linear time; a corpus whose unchanged documents
        changed order is re-sorted instead."""
        survivors = kept[kept >= 0]
        if np.any(np.diff(survivors) <= 0):
            return cls.build(forward, n_terms)
        fresh_postings = cls.build(fresh, n_terms)
        lengths = {name: forward.fields[name].lengths for name in ("title", "body")}
        lengths[TEXT_FIELD] = lengths["title"] + lengths["body"]
        return cls({
            name: FieldPostings.merged(previous.fields[name], kept, fresh_postings.fields[name], fresh_ords,
                                       lengths[name], n_terms)
            for name in INDEXED_FIELDS
        })

    def save(self, folder: Path, vocabulary: Vocabulary) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        vocabulary.save(folder / "vocabulary.parquet")
        for name, postings in self.fields.items():
            postings.save(folder, name)
        pq.write_table(self.terms_table(vocabulary), folder / "terms.parquet")
        pq.write_table(self.postings_table(), folder / "postings.parquet", row_group_size=1 << 20)

    def terms_table(self, vocabulary: Vocabulary) -> pa.Table:
        tables = []
        terms = pa.array(vocabulary.terms, pa.string())
        for name, postings in self.fields.items():
            df = postings.doc_frequencies()
            present = np.flatnonzero(df)
            tables.append(
                pa.table(
                    {
                        "term_id": pa.array(present.astype(np.int32)),
                        "term": terms.take(pa.array(present)),
                        "field": pa.array([name] * len(present), pa.string()),
                        "df": pa.array(df[present].astype(np.int32)),
                        "cf": pa.array(postings.collection_frequencies()[present]),
                    },
                    schema=schemas.TERMS,
                )
            )
        return pa.concat_tables(tables)

    def postings_table(self) -> pa.Table:
        tables = []
        for name, postings in self.fields.items():
            n = len(postings.docs)
            term_of_posting = np.repeat(np.arange(postings.n_terms, dtype=np.int32), postings.doc_frequencies())
            tables.append(
                pa.table(
                    {
                        "field": pa.repeat(pa.scalar(name, pa.string()), n),
                        "term_id": pa.array(term_of_posting),
                        "doc_ord": pa.array(postings.docs),
                        "tf": pa.array(postings.tfs),
                        "positions": csr_lists(postings.pos_indptr, postings.positions),
                    },
                    schema=schemas.POSTINGS,
                )
            )
        return pa.concat_tables(tables)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> InvertedIndex:
        return cls({name: FieldPostings.load(folder, name, mmap) for name in INDEXED_FIELDS})
