"""Recall branches in parallel, and their fusion."""
