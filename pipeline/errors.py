"""The errors a user can cause and fix: one root, a few kinds, each with the CLI's exit code."""

from __future__ import annotations


class SousuoError(Exception):
    """Root of every error the user can act on; the CLI prints its message as one line and exits `exit_code`.

    Anything that is not a SousuoError is a bug and keeps its traceback."""

    exit_code = 1


class InputError(SousuoError):
    """A bad argument, file, record or request: fix the input and run again."""

    exit_code = 2


class QuerySyntaxError(InputError):
    """The query cannot be parsed; the message says where."""


class IndexNotFound(SousuoError):
    """No index, version or published artifact where one was expected."""

    exit_code = 3


class IndexDamaged(SousuoError):
    """An index file is missing, truncated or does not match its manifest; the message names the file."""

    exit_code = 4


class Mismatch(SousuoError):
    """Two artifacts disagree (analyzer, encoder, ranker features): using them together would give wrong results."""

    exit_code = 5


class AnalyzerMismatch(Mismatch):
    pass


class EncoderMismatch(Mismatch):
    pass


class RankerMismatch(Mismatch):
    """The model was trained on features this index cannot produce the same way."""


class RecallTooLow(SousuoError):
    """The ANN index misses the configured recall floor even at full search effort."""

    exit_code = 6


class IndexBusy(SousuoError):
    """Another build or update holds the index's lock."""

    exit_code = 7


class DeadlineExceeded(SousuoError):
    """A search ran past its request's deadline (the API's api.timeout_s) and stopped at the next stage."""

    exit_code = 8
