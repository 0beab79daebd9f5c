"""Facets over the documents a query matched: value counts of a metadata field, a date histogram, date order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np

from ..errors import InputError
from .filters import DocumentMetadata

FACET_FIELDS = ("source", "lang", "tags")
# Calendar units and the numpy unit each bucket start is truncated to (weeks start on Monday, like Elasticsearch).
CALENDAR_INTERVALS = ("day", "week", "month", "quarter", "year")


def value_counts(metadata: DocumentMetadata, docs: np.ndarray, field: str, size: int) -> list[tuple[str, int]]:
    """The `size` most frequent values of `field` among `docs`, most frequent first, ties by value."""
    if field not in FACET_FIELDS:
        raise InputError(f"facets count {FACET_FIELDS}, not {field!r}")
    if field == "tags":
        values = np.asarray(metadata.tag_values.to_numpy(zero_copy_only=False), dtype=object)
        values = values[np.isin(metadata.tag_parents, docs)]
    else:
        column = metadata.source if field == "source" else metadata.lang
        values = column.take(np.asarray(docs, dtype=np.int64)).drop_null().to_numpy(zero_copy_only=False)
    counts = Counter(values.tolist())
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]


def _bucket_starts(micros: np.ndarray, interval: str) -> np.ndarray:
    """Each timestamp's bucket start, as numpy datetime64 days/months/years."""
    days = micros.astype("datetime64[us]").astype("datetime64[D]")
    if interval == "day":
        return days
    if interval == "week":  # 1970-01-01 was a Thursday: shift so that Monday is 0
        return days - ((days.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
    months = days.astype("datetime64[M]")
    if interval == "month":
        return months
    if interval == "quarter":
        return months - (months.astype(np.int64) % 3).astype("timedelta64[M]")
    return days.astype("datetime64[Y]")


def date_histogram(metadata: DocumentMetadata, docs: np.ndarray, interval: str) -> list[tuple[datetime, int]]:
    """(bucket start in UTC, count) from the first dated document's bucket to the last's, empty buckets included."""
    if interval not in CALENDAR_INTERVALS:
        raise InputError(f"calendar_interval is one of {CALENDAR_INTERVALS}, not {interval!r}")
    docs = np.asarray(docs, dtype=np.int64)
    docs = docs[metadata.has_date[docs]]
    if not len(docs):
        return []
    starts = _bucket_starts(metadata.published_us[docs], interval)
    step = {"week": 7, "quarter": 3}.get(interval, 1)
    every = np.arange(starts.min(), starts.max() + 1, step)
    counts = Counter(starts.tolist())
    return [(datetime.fromisoformat(str(start.astype("datetime64[D]"))).replace(tzinfo=UTC), counts.get(start.item(), 0))
            for start in every]


def by_date(metadata: DocumentMetadata, docs: np.ndarray, descending: bool) -> np.ndarray:
    """`docs` ordered by publication date to the millisecond (the precision Elasticsearch sorts and pages at),
    undated documents last, ties by ordinal."""
    docs = np.asarray(docs, dtype=np.int64)
    dated = metadata.has_date[docs]
    millis = metadata.published_us[docs] // 1000
    key = -millis if descending else millis
    return docs[np.lexsort((docs, key, ~dated))]
