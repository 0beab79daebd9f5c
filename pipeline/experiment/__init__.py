"""Evaluation runs of a method on a judged collection, and the reproduction matrix."""
