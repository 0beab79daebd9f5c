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
        # Optional, last: documents.parquet of indexes built before it lacks the column, and reads as no region.
        pa.field("region", pa.string()),
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

# The query log (pipeline/index/querylog.py): one row per query, one per click. Columns added later are nullable
# and at the end, so part files written before them still read (their rows have nulls there).
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
        # Salted hashes of the client's anonymous user and session ids (never the ids themselves); null if not sent.
        pa.field("user_hash", pa.string()),
        pa.field("session_hash", pa.string()),
        pa.field("ranker", pa.string()),  # the ranker model id that ordered the results, when one did
        pa.field("arm", pa.string()),  # the experiment arm the results came from, when one was running
        # An interleaving experiment's id, and the arm (control or candidate) that placed each of result_ids.
        pa.field("experiment", pa.string()),
        pa.field("result_arms", pa.list_(pa.string())),
    ]
)

CLICKS = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # 1-based rank of the clicked result
        pa.field("user_hash", pa.string()),
        pa.field("session_hash", pa.string()),
    ]
)

# Click models fitted on the query log (pipeline/behaviour/): examination propensity by position, estimated
# relevance per query and document, and held-out fit by rank.
CLICK_PROPENSITIES = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("propensity", pa.float64()),  # P(examined), relative to position 1
    ]
)

CLICK_RELEVANCE = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),  # the query text as the log groups it (lower-cased, trimmed)
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("relevance", pa.float64()),  # the model's P(click | examined), or DBN's attractiveness x satisfaction
        pa.field("impressions", pa.int64()),
        pa.field("clicks", pa.int64()),
    ]
)

CLICK_MODEL_FIT = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("position", pa.int32()),  # null: over all positions
        pa.field("log_likelihood", pa.float64()),  # mean per held-out session and position
        pa.field("perplexity", pa.float64()),
        pa.field("sessions", pa.int64()),
    ]
)
