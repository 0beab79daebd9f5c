"""The cost of checking query log parts before reading them (pipeline/index/querylog.py `QueryLog.parts`): the first
check reads every part's footer, later ones only stat the parts; beside them, one DuckDB read of every part. Prints
a line for docs/ui.md."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline.index.querylog import CLICKS_DIR, QueryLog


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", type=int, default=2000, help="click part files in the scratch log")
    parser.add_argument("--repeats", type=int, default=5, help="cached checks and reads timed (the median is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = QueryLog(Path(folder))
        for i in range(args.parts):
            log.log_click(f"q{i}", f"d{i}", 1)
        first = timed(lambda: log.parts(CLICKS_DIR))
        cached = sorted(timed(lambda: log.parts(CLICKS_DIR)) for _ in range(args.repeats))[args.repeats // 2]
        read = sorted(timed(log.count) for _ in range(args.repeats))[args.repeats // 2]
    print(f"{args.parts} parts: first check {first:.0f} ms, cached check {cached:.0f} ms, "
          f"count() with the cached check {read:.0f} ms")


if __name__ == "__main__":
    main()
