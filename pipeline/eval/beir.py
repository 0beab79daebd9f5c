"""Judged collections in BEIR layout: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

Qrels = dict[str, dict[str, int]]  # query id → doc id → graded relevance


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
        if not (path / "corpus.jsonl").is_file():
            raise InputError(f"{path} is not a BEIR folder: corpus.jsonl is missing")
        queries = {}
        with open(path / "queries.jsonl", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    queries[str(record["_id"])] = record["text"]
        return cls(path, queries)

    def splits(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def qrels(self, split: str) -> Qrels:
        path = self.path / "qrels" / f"{split}.tsv"
        if not path.is_file():
            raise InputError(f"{self.name} has no split {split!r}; it has {self.splits()}")
        qrels: Qrels = {}
        with open(path, encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t"):
                if not row or row[0] == "query-id":
                    continue
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
        return qrels

    def judged_queries(self, split: str) -> tuple[dict[str, str], Qrels]:
        """(query id → text, qrels) of the split's judged queries that have a text."""
        qrels = self.qrels(split)
        return {q: self.queries[q] for q in qrels if q in self.queries}, qrels

    def fingerprint(self) -> str:
        corpus = self.path / "corpus.jsonl"
        stat = corpus.stat()
        return hashlib.sha256(f"{corpus.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
