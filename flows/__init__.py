"""Prefect flows over the pipeline library, and the sousuo command."""
