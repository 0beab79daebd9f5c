"""Checks one raw record against the documents schema: coerces only where the meaning is unambiguous, and otherwise
names the field at fault and why."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from ..config import IngestConfig
from ..text.analysis import detect_language
from .quarantine import (
    INVALID_UTF8,
    INVALID_VALUE,
    MISSING_ID,
    MISSING_TEXT,
    TOO_LARGE,
    WRONG_TYPE,
    Invalid,
    Rejection,
)

ID_KEYS = ("doc_id", "_id", "id", "docid")
BODY_KEYS = ("body", "text", "content", "contents")
DATE_KEYS = ("published_at", "date", "published")


def content_hash(title: str, body: str) -> str:
    return hashlib.blake2b(f"{title}\x00{body}".encode(), digest_size=16).hexdigest()


def _first(fields: dict[str, Any], keys: Iterable[str]) -> tuple[str, Any]:
    """(key, value) of the first of `keys` holding a value; the last key and None when none does."""
    for key in keys:
        value = fields.get(key)
        if value is not None and value != "":
            return key, value
    return key, None


def _type_name(value: Any) -> str:
    return type(value).__name__


def _text(value: Any, field: str, doc_id: str | None) -> str | None:
    """A string field: str as is, UTF-8 bytes decoded (a Parquet binary column); anything else is refused rather
    than indexed as its Python repr."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Invalid(Rejection(INVALID_UTF8, f"{field} bytes are not UTF-8: {error}", field, doc_id)) from None
    if not isinstance(value, str):
        raise Invalid(Rejection(WRONG_TYPE, f"{field} must be a string, not {_type_name(value)}", field, doc_id))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(Rejection(INVALID_UTF8, f"{field} holds a lone surrogate, which is not UTF-8", field,
                                doc_id)) from None
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _doc_id(value: Any, field: str) -> str:
    """An id is a string; an integer id becomes its decimal string (CSV ids are strings already, so `7` and "7"
    name the same document). Floats and booleans are refused: 1.0 and True are not ids, and neither is a blank
    string or one holding control characters, which no URL, log line or result list can show."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _text(value, field, None)
    if not text.strip():
        raise Invalid(Rejection(MISSING_ID, f"{field} is blank", field))
    if _CONTROL.search(text):
        raise Invalid(Rejection(INVALID_VALUE, f"{field} holds control characters: {text[:40]!r}", field))
    return text


def _tags(value: Any, doc_id: str) -> list[str]:
    """A list of strings; one string is one tag (CSV readers split their comma-separated cell before this)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise Invalid(Rejection(WRONG_TYPE, f"tags must be a list of strings, not {_type_name(value)}", "tags",
                                doc_id))
    tags = [_text(tag, "tags", doc_id) for tag in value]
    return [tag.strip() for tag in tags if tag and tag.strip()]


def _date(value: Any, field: str, doc_id: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        text = _text(value, field, doc_id)
        try:
            parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(Rejection(INVALID_VALUE, f"{field} is not an ISO 8601 date: {text[:40]!r}", field,
                                    doc_id)) from None
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=UTC)
    # Stored as UTC: an offset that moves the instant before year 1 or past year 9999 would be written, and then
    # fail every read of the row (9999-12-31T23:00-05:00 is in year 10000 in UTC).
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Invalid(Rejection(INVALID_VALUE, f"{field} is outside years 1 to 9999 in UTC: {parsed.isoformat()}",
                                field, doc_id)) from None


def validate(fields: dict[str, Any], source: str, config: IngestConfig) -> dict[str, Any] | Rejection:
    """The documents row of `fields` (less `ingested_at`), or why it is refused."""
    try:
        id_key, raw_id = _first(fields, ID_KEYS)
        if raw_id is None:
            return Rejection(MISSING_ID, f"none of the keys {ID_KEYS} holds a value")
        doc_id = _doc_id(raw_id, id_key)
        title = _text(fields.get("title"), "title", doc_id) or ""
        body_key, raw_body = _first(fields, BODY_KEYS)
        body = _text(raw_body, body_key, doc_id) or ""
        if not (title.strip() or body.strip()):
            return Rejection(MISSING_TEXT, "both title and body are empty", doc_id=doc_id)
        size = len(title) + len(body)
        if size > config.max_doc_chars:
            return Rejection(TOO_LARGE, f"{size} characters > limit {config.max_doc_chars}", doc_id=doc_id)
        date_key, raw_date = _first(fields, DATE_KEYS)
        return {
            "doc_id": doc_id,
            "title": title,
            "body": body,
            "url": _text(fields.get("url"), "url", doc_id),
            "path": _text(fields.get("path"), "path", doc_id),
            "source": _text(fields.get("source"), "source", doc_id) or source,
            "lang": _text(fields.get("lang"), "lang", doc_id) or detect_language(f"{title}\n{body[:2000]}"),
            "published_at": _date(raw_date, date_key, doc_id),
            "tags": _tags(fields.get("tags"), doc_id),
            "region": (_text(fields.get("region"), "region", doc_id) or "").strip() or None,
            "content_hash": content_hash(title, body),
        }
    except Invalid as invalid:
        return invalid.rejection
