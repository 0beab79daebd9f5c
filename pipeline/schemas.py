"""Every Parquet schema sousuo writes, declared once so DuckDB sees the same columns everywhere."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

DOCUMENTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("body", pa.string()),
        pa.field("url", pa.string()),
        pa.field("path", pa.string()),
        pa.field("source", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("published_at", TIMESTAMP),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("ingested_at", TIMESTAMP),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("location", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("field", pa.string()),  # the field at fault; null for a whole record or file
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        # The record exactly as read, so nothing rejected is ever lost; null for a whole file, which stays where
        # `location` says.
        pa.field("raw", pa.binary()),
        pa.field("quarantined_at", TIMESTAMP),
    ]
)

TERMS = pa.schema(
    [
        pa.field("term_id", pa.int32(), nullable=False),
        pa.field("term", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("df", pa.int32()),
        pa.field("cf", pa.int64()),
    ]
)

POSTINGS = pa.schema(
    [
        pa.field("field", pa.string(), nullable=False),
        pa.field("term_id", pa.int32(), nullable=False),
        pa.field("doc_ord", pa.int32(), nullable=False),
        pa.field("tf", pa.int32()),
        pa.field("positions", pa.list_(pa.int32())),
    ]
)

FORWARD = pa.schema(
    [
        pa.field("doc_ord", pa.int32(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("length", pa.int32()),
        pa.field("token_ids", pa.list_(pa.int32())),
    ]
)

PASSAGES = pa.schema(
    [
        pa.field("passage_id", pa.int32(), nullable=False),
        pa.field("doc_ord", pa.int32(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("text_hash", pa.string()),
    ]
)


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("passage_id", pa.int32(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("model_id", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


RUN = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32()),
        pa.field("score", pa.float64()),
        pa.field("method", pa.string()),
    ]
)

METRICS = pa.schema(
    [
        pa.field("dataset", pa.string()),
        pa.field("method", pa.string()),
        pa.field("split", pa.string()),
        pa.field("query_id", pa.string()),
        pa.field("measure", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("evaluated_at", TIMESTAMP),
    ]
)

# The query log (pipeline/querylog.py): one row per query, one per click.
QUERIES = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("text", pa.string()),
        pa.field("mode", pa.string()),
        pa.field("filters", pa.string()),  # JSON object of the filters in force ({} for none)
        pa.field("latency_ms", pa.float64()),
        pa.field("result_ids", pa.list_(pa.string())),  # doc ids shown, best first
        pa.field("result_count", pa.int64()),  # documents that matched in all (0 = a zero-result query)
        pa.field("result_offset", pa.int32()),  # result_ids[i] was shown at position result_offset + i + 1
    ]
)

CLICKS = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # 1-based rank of the clicked result
    ]
)
