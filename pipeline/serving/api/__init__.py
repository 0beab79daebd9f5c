"""`sousuo api`: the online HTTP service, a native JSON API under /v1 and an Elasticsearch-compatible subset."""
