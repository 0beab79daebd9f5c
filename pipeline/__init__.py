"""sousuo's engine: a plain library in layers that import only downward (see docs/architecture.md)."""
