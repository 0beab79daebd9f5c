"""Metadata filters (source, language, tags, dates, region) as boolean masks over the documents, and result rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError


def _as_utc(moment: datetime) -> datetime:
    """A date without a zone is UTC, as the mask reads it."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """Restrict results to documents whose metadata passes every given condition."""

    sources: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    # Last, so the positional construction of the fields above stays as it was; the Elasticsearch-compatible API's
    # term filters on `region` use it (the native API lifts a region rather than filtering by it).
    regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sources", "langs", "tags", "regions"):
            for value in getattr(self, name):
                if not isinstance(value, str):
                    raise InputError(f"filter {name} takes strings, got {value!r}")
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise InputError(f"filter {name} value {value!r} is not valid Unicode") from None
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise InputError(f"filter {name} takes a date, got {value!r}")
        if self.since is not None and self.until is not None and _as_utc(self.since) > _as_utc(self.until):
            raise InputError(f"filter since ({self.since.isoformat()}) is later than until ({self.until.isoformat()}): "
                             "no date lies between them")

    def __bool__(self) -> bool:
        return bool(self.sources or self.langs or self.tags or self.since or self.until or self.regions)


class DocumentMetadata:
    """Columnar document metadata: filter masks, ages and result rows."""

    def __init__(self, documents: pa.Table):
        self.documents = documents
        self.n_docs = documents.num_rows
        self.source = documents.column("source").combine_chunks()
        self.lang = documents.column("lang").combine_chunks()
        tags = documents.column("tags").combine_chunks()
        self.tag_values = pc.list_flatten(tags)
        self.tag_parents = pc.list_parent_indices(tags).to_numpy(zero_copy_only=False)
        published = documents.column("published_at").combine_chunks()
        self.has_date = published.is_valid().to_numpy(zero_copy_only=False)
        self.published_us = published.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        # Indexes built before documents had a region have no column: every document is then in no region.
        names = documents.column_names
        self.region = documents.column("region").combine_chunks() if "region" in names else None
        self.newest_us: int | None = None  # the collection's newest date, where these documents are one shard of it

    def region_of(self, doc_ord: int) -> str | None:
        return None if self.region is None else self.region[doc_ord].as_py()

    def in_region(self, docs: np.ndarray, region: str) -> np.ndarray:
        if self.region is None:
            return np.zeros(len(docs), dtype=bool)
        return pc.equal(self.region.take(pa.array(docs)), region).fill_null(False).to_numpy(zero_copy_only=False)

    def mask(self, filters: Filters) -> np.ndarray:
        mask = np.ones(self.n_docs, dtype=bool)
        if filters.sources:
            mask &= pc.is_in(self.source, pa.array(filters.sources)).fill_null(False).to_numpy(zero_copy_only=False)
        if filters.langs:
            mask &= pc.is_in(self.lang, pa.array(filters.langs)).fill_null(False).to_numpy(zero_copy_only=False)
        if filters.tags:
            hit = pc.is_in(self.tag_values, pa.array(filters.tags)).to_numpy(zero_copy_only=False)
            tagged = np.zeros(self.n_docs, dtype=bool)
            tagged[self.tag_parents[hit]] = True
            mask &= tagged
        if filters.regions:  # an index built before regions has none: no document is in any region
            mask &= (np.zeros(self.n_docs, dtype=bool) if self.region is None else
                     pc.is_in(self.region, pa.array(filters.regions)).fill_null(False).to_numpy(zero_copy_only=False))
        for bound, keep in ((filters.since, np.greater_equal), (filters.until, np.less_equal)):
            if bound is not None:
                micros = int(pa.scalar(bound, pa.timestamp("us", tz="UTC")).cast(pa.int64()).as_py())
                mask &= self.has_date & keep(self.published_us, micros)
        return mask

    def present(self, field: str) -> np.ndarray:
        """Documents with a value in `field` (source, lang, tags, region, published_at): Elasticsearch's `exists`."""
        if field == "published_at":
            return self.has_date.copy()
        if field == "tags":
            tagged = np.zeros(self.n_docs, dtype=bool)
            tagged[self.tag_parents] = True
            return tagged
        if field == "region" and self.region is None:
            return np.zeros(self.n_docs, dtype=bool)
        column = {"source": self.source, "lang": self.lang, "region": self.region}[field]
        return column.is_valid().to_numpy(zero_copy_only=False)

    def age_days(self, docs: np.ndarray) -> np.ndarray:
        """Days between each document's date and the newest date in the corpus (NaN where undated).

        Measured from the corpus's newest date, not today, so features do not drift while an index ages."""
        dated = self.has_date[docs]
        if not self.has_date.any():
            return np.full(len(docs), np.nan)
        newest = self.published_us[self.has_date].max() if self.newest_us is None else self.newest_us
        days = (newest - self.published_us[docs]) / 86_400e6
        return np.where(dated, days, np.nan)

    def row(self, doc_ord: int) -> dict:
        return {name: self.documents.column(name)[doc_ord].as_py() for name in self.documents.column_names}
