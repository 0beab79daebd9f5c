"""Names and caps that every layer above the index shares, defined once."""

SEARCH_MODES = ("bm25", "dense", "hybrid", "ltr")
MAX_K = 10_000  # results one request may page through, like Elasticsearch's max_result_window
MAX_QUERY_CHARS = 2_000  # longer queries are cut here, for searching and for logging alike
