"""Ingest: every reader's records validated into one documents table; whatever is refused goes to quarantine with the
field at fault and the reason, so no bad record or file aborts a build and nothing valid is lost."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import schemas
from ..config import IngestConfig
from .quarantine import DUPLICATE_ID, Rejection
from .readers import RawRecord, read_any
from .validate import validate


@dataclass
class IngestResult:
    documents: pa.Table
    quarantine: pa.Table
    duplicates_dropped: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "documents": self.documents.num_rows,
            "quarantined": self.quarantine.num_rows,
            "identical_duplicates_dropped": self.duplicates_dropped,
        }


@dataclass
class _Collector:
    config: IngestConfig
    now: datetime
    documents: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    ordinal_by_id: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0

    def reject(self, record: RawRecord, rejection: Rejection) -> None:
        self.quarantine.append(rejection.row(record.source, record.location, record.raw, self.now))

    def add(self, record: RawRecord) -> None:
        if record.error:
            self.reject(record, record.error)
            return
        document = validate(record.fields or {}, record.source, self.config)
        if isinstance(document, Rejection):
            self.reject(record, document)
            return
        doc_id = document["doc_id"]
        ordinal = self.ordinal_by_id.get(doc_id)
        if ordinal is not None:
            # The first record of an id wins; a later one is dropped when identical in text and metadata, and
            # quarantined when it differs in anything, so no version of a document disappears unrecorded.
            earlier = self.documents[ordinal]
            differing = [name for name, value in document.items() if name != "content_hash" and earlier[name] != value]
            if differing:
                self.reject(record, Rejection(DUPLICATE_ID, "an earlier record has this id and a different "
                                              + ", ".join(differing), ",".join(differing), doc_id))
            else:
                self.duplicates_dropped += 1
            return
        self.ordinal_by_id[doc_id] = len(self.documents)
        self.documents.append({**document, "ingested_at": self.now})


def ingest(paths: Iterable[Path | str], config: IngestConfig | None = None, progress=None) -> IngestResult:
    """Read every path into one validated documents table; rejects go to quarantine with a reason."""
    config = config or IngestConfig()
    collector = _Collector(config, datetime.now(UTC))
    for path in paths:
        for record in read_any(Path(path), config):
            collector.add(record)
            if progress is not None:
                progress.update(1)
    return IngestResult(
        documents=pa.Table.from_pylist(collector.documents, schema=schemas.DOCUMENTS),
        quarantine=pa.Table.from_pylist(collector.quarantine, schema=schemas.QUARANTINE),
        duplicates_dropped=collector.duplicates_dropped,
    )
