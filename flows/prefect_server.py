"""The Prefect API server of CLI flow runs: a shared local one, reused across runs, and the cleanup of the
temporary ones Prefect starts itself.

A flow run with no API server configured starts a temporary one, which costs seconds on every `sousuo build`,
`update` or `train`. With `flows.prefect_server = "shared"` (the default) the first flow command starts a local
server on 127.0.0.1 in the background, records it in PREFECT_HOME/sousuo-server.json, and every later command
uses it; `sousuo prefect-server stop` stops it. An explicit PREFECT_API_URL always wins.

Prefect starts its temporary server as a child process and stops it at exit, but a run killed with SIGKILL never
reaches its exit handlers, so the server is left running, re-parented to init. The next `sousuo` flow command
stops every orphaned temporary server that belongs to the same PREFECT_HOME; servers of running flows still have
their parent and are left alone."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline.errors import SousuoError

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


STATE_FILE = "sousuo-server.json"
STARTUP_TIMEOUT_S = 120


class PrefectServerError(SousuoError):
    """The shared Prefect server could not be started."""


def _home(prefect_home: str | None = None) -> Path:
    return Path(prefect_home or os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """The Prefect API at `api_url` (…/api) answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return json.load(response) is True
    except (OSError, ValueError):
        return False


def _record(prefect_home: str | None = None) -> dict | None:
    try:
        record = json.loads((_home(prefect_home) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "pid" in record and "url" in record else None


def _is_our_server(pid: int) -> bool:
    """`pid` is still a `prefect server start` process (a recorded pid may have been reused since a reboot)."""
    command = _read(Path("/proc") / str(pid) / "cmdline").split(b"\0")
    return b"prefect" in command and b"server" in command and b"start" in command


def shared_server_url(prefect_home: str | None = None) -> str | None:
    """The API URL of this PREFECT_HOME's shared server when it is up, else None. A recorded server that no
    longer answers, even given time (a loaded machine), is stopped and its record removed."""
    record = _record(prefect_home)
    if record is None:
        return None
    if healthy(record["url"]) or (_is_our_server(int(record["pid"])) and healthy(record["url"], timeout=15)):
        return record["url"]
    stop_shared_server(prefect_home)
    return None


def start_shared_server(prefect_home: str | None = None, env: dict | None = None) -> str:
    """Start a Prefect server for this PREFECT_HOME on a free 127.0.0.1 port, detached, and wait until it is
    healthy; returns its API URL. Its log goes to PREFECT_HOME/sousuo-server.log."""
    home = _home(prefect_home)
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**(env or os.environ), "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    prefect = [sys.executable, "-m", "prefect"]
    with open(home / "sousuo-server.log", "ab") as log:
        subprocess.run([*prefect, "server", "database", "upgrade", "-y"], env=env, stdout=log, stderr=log, check=False)
        server = subprocess.Popen([*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(url):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_process_group(server.pid)
            raise PrefectServerError(f"the shared Prefect server did not start; see {home / 'sousuo-server.log'}")
        time.sleep(0.3)
    (home / STATE_FILE).write_text(json.dumps({"pid": server.pid, "url": url}))
    return url


def stop_shared_server(prefect_home: str | None = None) -> bool:
    """Stop this PREFECT_HOME's shared server; False when none was recorded."""
    record = _record(prefect_home)
    if record is None:
        return False
    if _is_our_server(int(record["pid"])):
        stop_process_group(int(record["pid"]))
    (_home(prefect_home) / STATE_FILE).unlink(missing_ok=True)
    return True


def stop_process_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL what is left after `timeout` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def use_shared_server() -> str:
    """Point this process's flows at the shared server, starting it if it is not up; returns its API URL.

    Two commands started together must not both start one: the check and the start hold a file lock."""
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "sousuo-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = shared_server_url() or start_shared_server()
    os.environ["PREFECT_API_URL"] = url
    return url
