"""Readers that turn JSONL, Parquet, CSV, BEIR and folders of Markdown/text/HTML into raw records, never raising on
bad data: a record or file that cannot be read becomes a record carrying its rejection."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import IngestConfig
from ..errors import InputError
from .quarantine import (
    INVALID_CSV,
    INVALID_JSON,
    INVALID_UTF8,
    UNREADABLE_FILE,
    Rejection,
)

# A CSV cell may be as long as a whole document: the size limit is ingest.max_doc_chars, checked per document, not
# the csv module's default 131,072 characters per field, which aborted the read of the whole file.
csv.field_size_limit(sys.maxsize)


@dataclass(slots=True)
class RawRecord:
    """One record as a reader found it, before validation; `error` is set when it could not be parsed, and a
    record standing for a whole file that cannot be read has `raw` None."""

    source: str
    location: str
    raw: bytes | None
    fields: dict[str, Any] | None = None
    error: Rejection | None = None


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


# Byte-order marks of the Unicode encodings other than UTF-8, UTF-32's first: its little-endian mark begins with
# UTF-16's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
              (codecs.BOM_UTF16_BE, "utf-16"))


def _as_utf8(data: bytes) -> bytes:
    """Text that declares UTF-16 or UTF-32 with a byte-order mark (as Windows tools save it) re-encoded as UTF-8;
    anything else, or such text that does not decode, as it is (its records are then quarantined one by one)."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).encode("utf-8")
            except UnicodeError:
                return data
    return data


def _wide(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4)
    return any(head.startswith(bom) for bom, _ in _WIDE_BOMS)


def read_jsonl(path: Path, source: str) -> Iterator[RawRecord]:
    # A UTF-16 file is read whole to re-encode it; UTF-8 ones stream line by line.
    with (io.BytesIO(_as_utf8(path.read_bytes())) if _wide(path) else open(path, "rb")) as handle:
        for line_no, line in enumerate(handle, 1):
            if line_no == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            location = f"{path}:{line_no}"
            try:
                fields = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield RawRecord(source, location, line, error=Rejection(INVALID_UTF8, str(error)))
                continue
            except RecursionError:
                yield RawRecord(source, location, line, error=Rejection(INVALID_JSON, "JSON nested too deeply to read"))
                continue
            except ValueError as error:  # JSONDecodeError, or an integer too long to convert
                yield RawRecord(source, location, line, error=Rejection(INVALID_JSON, str(error)))
                continue
            if not isinstance(fields, dict):
                yield RawRecord(source, location, line, error=Rejection(INVALID_JSON, "a line must hold a JSON object"))
                continue
            yield RawRecord(source, location, line, fields)


def read_csv(path: Path, source: str) -> Iterator[RawRecord]:
    # surrogateescape keeps undecodable bytes recoverable, so a bad row is quarantined, not the file.
    text = _as_utf8(path.read_bytes()).removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    row_no = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # the reader resumes at the next line
            row_no += 1
            yield RawRecord(source, f"{path}:{reader.line_num}", None, error=Rejection(INVALID_CSV, str(error)))
            continue
        row_no += 1
        location = f"{path}:{row_no}"
        line = ",".join(str(v) for v in row.values())
        raw = line.encode("utf-8", errors="surrogateescape")
        if any(v is None for v in row.values()) or None in row:
            yield RawRecord(source, location, raw, error=Rejection(INVALID_CSV, "row has a different number of columns"))
            continue
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as error:
            yield RawRecord(source, location, raw, error=Rejection(INVALID_UTF8, str(error)))
            continue
        if row.get("tags") is not None:
            # CSV has no lists: a tags cell holds comma-separated tags.
            row["tags"] = row["tags"].split(",")
        yield RawRecord(source, location, raw, row)


def _json_raw(row: dict[str, Any]) -> bytes:
    return json.dumps(row, default=repr, ensure_ascii=False).encode("utf-8", errors="backslashreplace")


def read_parquet(path: Path, source: str) -> Iterator[RawRecord]:
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for offset, row in enumerate(batch.to_pylist()):
            yield RawRecord(source, f"{path}#row={start + offset}", _json_raw(row), row)
        start += batch.num_rows


def read_folder(path: Path, source: str, config: IngestConfig) -> Iterator[RawRecord]:
    suffixes = set(config.markdown_suffixes) | set(config.html_suffixes)
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        location = str(file)
        try:
            data = file.read_bytes()
        except OSError as error:
            yield RawRecord(source, location, None, error=Rejection(UNREADABLE_FILE, str(error)))
            continue
        relative = file.relative_to(path).as_posix()
        try:
            text = _as_utf8(data).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            yield RawRecord(source, location, data, error=Rejection(INVALID_UTF8, str(error)))
            continue
        parse = _html_fields if file.suffix.lower() in config.html_suffixes else _markdown_fields
        fields = {"doc_id": relative, "path": relative, **parse(text)}
        yield RawRecord(source, location, data, fields)


def _whole_file_guarded(records: Iterator[RawRecord], path: Path, source: str) -> Iterator[RawRecord]:
    """`records`, ending in one rejection for the file when it cannot be read on (a truncated or garbage Parquet
    file, a file that vanished or is not readable): the other inputs are still built."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record
    except (OSError, pa.ArrowException, UnicodeDecodeError) as error:
        where = f"after {count} records: " if count else ""
        detail = where + " ".join(f"{type(error).__name__}: {error}".split())
        yield RawRecord(source, str(path), None, error=Rejection(UNREADABLE_FILE, detail))


def is_beir_folder(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").is_file()


def read_any(path: Path, config: IngestConfig, source: str | None = None) -> Iterator[RawRecord]:
    """Dispatch on what `path` is: a BEIR folder, a plain folder, or a .jsonl/.parquet/.csv file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"corpus path does not exist: {path}")
    source = source or (path.name if path.is_dir() else path.stem)
    if is_beir_folder(path):
        return _whole_file_guarded(read_jsonl(path / "corpus.jsonl", source), path / "corpus.jsonl", source)
    if path.is_dir():
        return read_folder(path, source, config)
    readers = {".jsonl": read_jsonl, ".ndjson": read_jsonl, ".csv": read_csv, ".parquet": read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"no reader for {path}: expected a folder, .jsonl, .csv or .parquet")
    return _whole_file_guarded(reader(path, source), path, source)
