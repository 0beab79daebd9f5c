"""Judged collections and the measures computed on them."""
