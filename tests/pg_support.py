"""A throwaway PostgreSQL server for the tests and benchmarks: initdb into a temporary folder, `postgres` on a free
loopback port, a fresh database per test, everything removed at the end.

The server binaries come from the machine (`initdb` on PATH, else Debian's /usr/lib/postgresql/*/bin); `make test`
installs Debian's `postgresql` package when they are missing. PostgreSQL refuses to run as root, so under root the
server runs as the `postgres` user (which that package creates).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from protege.demo import free_port

BINARIES = ("initdb", "postgres", "pg_ctl")
MISSING = ("The PostgreSQL server binaries (initdb, postgres, pg_ctl) are not on this machine: run `make postgres` "
           "(Debian's `postgresql` package) or put a PostgreSQL bin folder on PATH.")


def find_bin_dir() -> Path:
    """The folder holding initdb, postgres and pg_ctl."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if all((folder / name).exists() for name in BINARIES):
            return folder
    raise RuntimeError(MISSING)


def _server_user() -> str:
    """Who runs the server when we are root: `postgres` (Debian's package creates it), else `nobody`."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        return "nobody"


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1 with trust authentication for the user `protege`."""

    def __init__(self, root: Path | None = None, port: int | None = None):
        """`root` (default: a new folder in the temporary directory) holds the data and the log."""
        self.bin = find_bin_dir()
        self.root = Path(root or tempfile.mkdtemp(prefix="protege-pg-"))
        self.data = self.root / "data"
        self.port = port or free_port()
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self._user = _server_user() if os.geteuid() == 0 else None  # postgres refuses to run as root

    def _run_as(self) -> dict:
        if self._user is None:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir()
        if self._user is not None:
            os.chmod(self.root, 0o755)
            shutil.chown(self.data, self._user, self._user)
            self.log.touch()
            shutil.chown(self.log, self._user, self._user)
        done = subprocess.run([self.bin / "initdb", "-D", self.data, "-U", "protege", "--auth=trust", "-E", "UTF8",
                               "--locale=C", "--no-sync"], capture_output=True, text=True, check=False, **self._run_as())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({self.data}; the server runs as {self._user or 'this user'}, who must be "
                               f"able to reach that folder):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "",
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200",
                    "shared_buffers": "64MB"}
        args = [self.bin / "postgres", "-D", self.data] + [f"-c{k}={v}" for k, v in settings.items()]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **self._run_as())
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://protege@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: postgres' "smart" shutdown; SIGINT would be "fast"
            self.proc.send_signal(2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
