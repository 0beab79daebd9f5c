"""How `sousuo ui --index DIR [--port P]` starts the Streamlit app.

    import subprocess
    from app import launch
    subprocess.run(launch.command(index_dir, port), env=launch.environment(index_dir), check=False)

The app reads the index folder from SOUSUO_INDEX (set by `environment`); `command` also passes it after `--`
so that running the argv alone works too. The server listens on 127.0.0.1 only, headless, with usage
statistics off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INDEX_ENV = "SOUSUO_INDEX"  # read by app/common.py

APP_DIR = Path(__file__).resolve().parent
MAIN_SCRIPT = APP_DIR / "Search.py"
DEFAULT_PORT = 8501


def command(index_dir: Path | str, port: int = DEFAULT_PORT) -> list[str]:
    """The `streamlit run …` argv that serves the UI for `index_dir` on 127.0.0.1:`port`."""
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(int(port)),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--", "--index", str(Path(index_dir).resolve()),
    ]


def environment(index_dir: Path | str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `command`: SOUSUO_INDEX set, usage statistics off."""
    env = dict(os.environ if base is None else base)
    env[INDEX_ENV] = str(Path(index_dir).resolve())
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    return env


def main(argv: list[str] | None = None) -> int:
    """`python -m app.launch --index DIR [--port P]`: serve the UI until interrupted."""
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(prog="python -m app.launch", description="Serve the sousuo UI.")
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    print(f"sousuo UI on http://127.0.0.1:{args.port}  (index {args.index})", file=sys.stderr)
    try:
        return subprocess.call(command(args.index, args.port), env=environment(args.index))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
