"""Prefect's temporary API server outlives a CLI run that was killed: find such orphans of ours and stop them.

Prefect starts its temporary server as a child process and stops it at exit, but a run killed with SIGKILL never
reaches its exit handlers, so the server is left running, re-parented to init. The next `sousuo` flow command
stops every orphaned temporary server that belongs to the same PREFECT_HOME; servers of running flows still have
their parent and are left alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path

# How Prefect starts the temporary server (prefect.server.api.server.SubprocessASGIServer).
SERVER_APP = b"prefect.server.api.server:create_app"
EPHEMERAL_FLAG = b"PREFECT__SERVER_EPHEMERAL=1"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended, or is not ours to read
        return b""


def _parent(proc: Path) -> int:
    stat = _read(proc / "stat").decode(errors="replace")
    # The command name (field 2) may hold spaces and parentheses: the parent id is the 2nd field after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else -1


def orphaned_servers(prefect_home: str | None = None) -> list[int]:
    """Process ids of temporary Prefect servers of this PREFECT_HOME whose parent has died (Linux /proc only)."""
    home = (prefect_home or os.environ.get("PREFECT_HOME") or str(Path.home() / ".prefect")).encode()
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return []
    found = []
    for proc in proc_root.iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        if SERVER_APP not in _read(proc / "cmdline") or _parent(proc) != 1:
            continue
        environ = _read(proc / "environ").split(b"\0")
        homes = [entry.split(b"=", 1)[1] for entry in environ if entry.startswith(b"PREFECT_HOME=")]
        if EPHEMERAL_FLAG in environ and (homes[-1] if homes else str(Path.home() / ".prefect").encode()) == home:
            found.append(int(proc.name))
    return found


def reap_orphaned_servers(prefect_home: str | None = None) -> list[int]:
    """Stop the orphaned temporary servers of this PREFECT_HOME; returns their process ids."""
    stopped = []
    for pid in orphaned_servers(prefect_home):
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    return stopped
