"""The read side: query syntax and plans, the index reader, BM25, matching, filters, top-k and result rows."""
