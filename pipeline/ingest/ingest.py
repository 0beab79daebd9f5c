"""Readers that turn JSONL, Parquet, CSV, BEIR and folders of Markdown/text/HTML into one documents table."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import schemas
from ..config import IngestConfig
from ..errors import InputError
from ..text.analysis import detect_language

ID_KEYS = ("doc_id", "_id", "id", "docid")
BODY_KEYS = ("body", "text", "content", "contents")


@dataclass(slots=True)
class RawRecord:
    """One record as a reader found it, before validation."""

    source: str
    location: str
    raw: bytes
    fields: dict[str, Any] | None = None  # None when the bytes could not be parsed
    error: tuple[str, str] | None = None  # (reason, detail) from the reader


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


class _HTMLText(HTMLParser):
    """Collects visible text and the <title> of an HTML page; scripts and styles are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag in {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr"}:
            self.text.append("\n")

    def handle_data(self, data):
        current = self._stack[-1] if self._stack else ""
        if current == "title":
            self.title.append(data)
        elif current not in {"script", "style", "head"}:
            self.text.append(data)


def _html_fields(text: str) -> dict[str, str]:
    parser = _HTMLText()
    parser.feed(text)
    body = re.sub(r"\n\s*\n+", "\n\n", "".join(parser.text)).strip()
    title = " ".join("".join(parser.title).split())
    if not title:
        heading = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.S | re.I)
        title = re.sub(r"<[^>]+>", "", heading.group(1)).strip() if heading else ""
    return {"title": title, "body": body}


def _markdown_fields(text: str) -> dict[str, str]:
    heading = re.search(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
    if heading:
        return {"title": heading.group(1).strip(), "body": text[heading.end() :].strip()}
    return {"title": "", "body": text.strip()}


def read_jsonl(path: Path, source: str) -> Iterator[RawRecord]:
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            location = f"{path}:{line_no}"
            try:
                fields = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield RawRecord(source, location, line, error=("invalid_utf8", str(error)))
                continue
            except json.JSONDecodeError as error:
                yield RawRecord(source, location, line, error=("invalid_json", str(error)))
                continue
            if not isinstance(fields, dict):
                yield RawRecord(source, location, line, error=("invalid_json", "a line must hold a JSON object"))
                continue
            yield RawRecord(source, location, line, fields)


def read_csv(path: Path, source: str) -> Iterator[RawRecord]:
    # surrogateescape keeps undecodable bytes recoverable, so a bad row is quarantined, not the file.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row_no, row in enumerate(reader, 2):
        location = f"{path}:{row_no}"
        line = ",".join(str(v) for v in row.values())
        raw = line.encode("utf-8", errors="surrogateescape")
        if any(v is None for v in row.values()) or None in row:
            yield RawRecord(source, location, raw, error=("invalid_csv", "row has a different number of columns"))
            continue
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as error:
            yield RawRecord(source, location, raw, error=("invalid_utf8", str(error)))
            continue
        yield RawRecord(source, location, raw, dict(row))


def read_parquet(path: Path, source: str) -> Iterator[RawRecord]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        start = 0
        for offset, row in enumerate(batch.to_pylist()):
            location = f"{path}#row={start + offset}"
            yield RawRecord(source, location, json.dumps(row, default=str, ensure_ascii=False).encode(), row)
        start += batch.num_rows


def read_folder(path: Path, source: str, config: IngestConfig) -> Iterator[RawRecord]:
    suffixes = set(config.markdown_suffixes) | set(config.html_suffixes)
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        data = file.read_bytes()
        location = str(file)
        relative = file.relative_to(path).as_posix()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            yield RawRecord(source, location, data, error=("invalid_utf8", str(error)))
            continue
        parse = _html_fields if file.suffix.lower() in config.html_suffixes else _markdown_fields
        fields = {"doc_id": relative, "path": relative, **parse(text)}
        yield RawRecord(source, location, data, fields)


def is_beir_folder(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").is_file()


def read_any(path: Path, config: IngestConfig, source: str | None = None) -> Iterator[RawRecord]:
    """Dispatch on what `path` is: a BEIR folder, a plain folder, or a .jsonl/.parquet/.csv file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"corpus path does not exist: {path}")
    source = source or (path.name if path.is_dir() else path.stem)
    if is_beir_folder(path):
        return read_jsonl(path / "corpus.jsonl", source)
    if path.is_dir():
        return read_folder(path, source, config)
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return read_jsonl(path, source)
    if suffix == ".csv":
        return read_csv(path, source)
    if suffix == ".parquet":
        return read_parquet(path, source)
    raise InputError(f"no reader for {path}: expected a folder, .jsonl, .csv or .parquet")


def _first(fields: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = fields.get(key)
        if value is not None and value != "":
            return value
    return None


def _parse_date(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(tag).strip() for tag in value if str(tag).strip()]


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def content_hash(title: str, body: str) -> str:
    return hashlib.blake2b(f"{title}\x00{body}".encode(), digest_size=16).hexdigest()


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass
class _Collector:
    config: IngestConfig
    now: datetime
    documents: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    hash_by_id: dict[str, str] = field(default_factory=dict)
    duplicates_dropped: int = 0

    def reject(self, record: RawRecord, reason: str, detail: str, doc_id: str | None = None) -> None:
        self.quarantine.append(
            {
                "source": record.source,
                "location": record.location,
                "doc_id": doc_id,
                "reason": reason,
                "detail": detail,
                "raw": record.raw,
                "quarantined_at": self.now,
            }
        )

    def add(self, record: RawRecord) -> None:
        if record.error:
            self.reject(record, *record.error)
            return
        fields = record.fields or {}
        doc_id = _first(fields, ID_KEYS)
        if doc_id is None:
            self.reject(record, "missing_id", f"none of the keys {ID_KEYS} holds a value")
            return
        doc_id = str(doc_id)
        title = str(fields.get("title") or "")
        body = str(_first(fields, BODY_KEYS) or "")
        if not (title.strip() or body.strip()):
            self.reject(record, "missing_text", "both title and body are empty", doc_id)
            return
        if any(_has_surrogates(v) for v in (doc_id, title, body)):
            self.reject(record, "invalid_utf8", "text holds bytes that are not UTF-8", doc_id)
            return
        size = len(title) + len(body)
        if size > self.config.max_doc_chars:
            self.reject(record, "too_large", f"{size} characters > limit {self.config.max_doc_chars}", doc_id)
            return
        digest = content_hash(title, body)
        previous = self.hash_by_id.get(doc_id)
        if previous is not None:
            if previous == digest:
                self.duplicates_dropped += 1
            else:
                self.reject(record, "duplicate_id", "an earlier record has this id and different content", doc_id)
            return
        self.hash_by_id[doc_id] = digest
        self.documents.append(
            {
                "doc_id": doc_id,
                "title": title,
                "body": body,
                "url": _optional_str(fields.get("url")),
                "path": _optional_str(fields.get("path")),
                "source": str(fields.get("source") or record.source),
                "lang": fields.get("lang") or detect_language(f"{title}\n{body[:2000]}"),
                "published_at": _parse_date(_first(fields, ("published_at", "date", "published"))),
                "tags": _parse_tags(fields.get("tags")),
                "content_hash": digest,
                "ingested_at": self.now,
            }
        )


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
