"""The write side and what is on disk: forward and inverted indexes, versions, builds, updates, the query log."""
