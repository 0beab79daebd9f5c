"""A request's deadline, checked between the stages of a search so that a slow query stops instead of running on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import DeadlineExceeded

# A context variable rather than a parameter: the stages that check it are many layers apart, and a search run
# without a deadline (the CLI, the UI, evaluation) must not have to pass one.
_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("sousuo_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Searches in this block stop with DeadlineExceeded at the first stage boundary past `seconds` from now."""
    token = _DEADLINE.set((time.perf_counter() + seconds, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check(stage: str) -> None:
    """Raise DeadlineExceeded if the current request's deadline has passed; free when there is none."""
    bound = _DEADLINE.get()
    if bound is not None and time.perf_counter() > bound[0]:
        raise DeadlineExceeded(f"the search took longer than {bound[1]} s (api.timeout_s) and stopped at {stage}")
