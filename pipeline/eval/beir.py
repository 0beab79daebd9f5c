"""Judged collections in BEIR layout: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

Qrels = dict[str, dict[str, int]]  # query id → doc id → graded relevance


def _lines(path: Path):
    """(line number, stripped line) of a text file's non-blank lines; a byte-order mark is dropped."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            yield from ((number, line.strip()) for number, line in enumerate(handle, 1) if line.strip())
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def read_queries(path: Path) -> dict[str, str]:
    """Query id → text from BEIR's queries.jsonl; integer ids are read as strings."""
    queries = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InputError(f"{path}:{number} is not a JSON object ({error})") from None
        query_id = record.get("_id") if isinstance(record, dict) else None
        if not isinstance(query_id, str | int) or isinstance(query_id, bool) or not isinstance(record.get("text"), str):
            raise InputError(f"{path}:{number} needs a string or integer \"_id\" and a string \"text\"")
        queries[str(record["_id"])] = record["text"]
    return queries


_SCORE_HEADINGS = ("score", "relevance", "rel", "label", "grade")


def read_qrels(path: Path) -> Qrels:
    """Judgments from BEIR's `query-id corpus-id score` rows (tab-separated, with or without the header) or TREC's
    `query-id iteration corpus-id score`, separated by tabs or spaces; scores may be written as floats."""
    qrels: Qrels = {}
    for index, (number, line) in enumerate(_lines(path)):
        row = line.split("\t") if "\t" in line else line.split()
        if len(row) not in (3, 4):
            raise InputError(f"{path}:{number} has {len(row)} columns; judgments have 3 (BEIR) or 4 (TREC)")
        query, doc, score = row[0].strip(), row[-2].strip(), row[-1].strip()
        try:
            relevance = int(float(score))
        except (ValueError, OverflowError):
            if index == 0 and score.lower() in _SCORE_HEADINGS:  # BEIR's query-id / corpus-id / score
                continue
            raise InputError(f"{path}:{number}: the relevance {score!r} is not a number") from None
        qrels.setdefault(query, {})[doc] = relevance
    return qrels


@dataclass
class BeirDataset:
    path: Path
    queries: dict[str, str]

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path | str) -> BeirDataset:
        path = Path(path)
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (path / name).is_file():
                raise InputError(f"{path} is not a BEIR folder: {name} is missing")
        return cls(path, read_queries(path / "queries.jsonl"))

    def splits(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def qrels(self, split: str) -> Qrels:
        path = self.path / "qrels" / f"{split}.tsv"
        if not path.is_file():
            raise InputError(f"{self.name} has no split {split!r}; it has {self.splits()}")
        return read_qrels(path)

    def judged_queries(self, split: str) -> tuple[dict[str, str], Qrels]:
        """(query id → text, qrels) of the split's judged queries that have a text."""
        qrels = self.qrels(split)
        return {q: self.queries[q] for q in qrels if q in self.queries}, qrels

    def fingerprint(self) -> str:
        corpus = self.path / "corpus.jsonl"
        stat = corpus.stat()
        return hashlib.sha256(f"{corpus.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
