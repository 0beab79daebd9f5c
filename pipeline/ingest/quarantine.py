"""Why a record or a file was refused: the reason, the field at fault and a one-line detail, as a quarantine row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The reasons a quarantine row can give, one word each.
INVALID_JSON = "invalid_json"  # a JSONL line that is not one JSON object (or is nested too deeply to read)
INVALID_CSV = "invalid_csv"  # a CSV row with the wrong number of cells, or one the csv module cannot read
INVALID_UTF8 = "invalid_utf8"  # bytes that are not UTF-8, or a lone surrogate that cannot be encoded as UTF-8
MISSING_ID = "missing_id"
MISSING_TEXT = "missing_text"
TOO_LARGE = "too_large"
WRONG_TYPE = "wrong_type"  # a field whose type the documents schema cannot take without guessing
INVALID_VALUE = "invalid_value"  # a field of the right type that does not parse (a date that is not a date)
DUPLICATE_ID = "duplicate_id"  # an earlier record has this id and differs in text or metadata
UNREADABLE_FILE = "unreadable_file"  # the whole file (or the rest of it) cannot be read: truncated, garbage, no access
MISSING_COLUMN = "missing_column"  # a query log part lacks a column every part has (pipeline/index/querylog.py)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one record or file is refused; `field` names the field at fault where there is one."""

    reason: str
    detail: str
    field: str | None = None
    doc_id: str | None = None

    def row(self, source: str, location: str, raw: bytes | None, at: datetime) -> dict[str, Any]:
        """The quarantine row (schemas.QUARANTINE) of this rejection."""
        return {"source": source, "location": location, "doc_id": self.doc_id, "field": self.field,
                "reason": self.reason, "detail": self.detail, "raw": raw, "quarantined_at": at}


class Invalid(Exception):
    """Raised by a field's validator: carries the rejection to the record's validation."""

    def __init__(self, rejection: Rejection):
        super().__init__(rejection.detail)
        self.rejection = rejection
