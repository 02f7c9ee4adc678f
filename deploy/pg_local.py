"""A throwaway PostgreSQL cluster (Debian's postgresql package) for tests and benchmarks.

initdb refuses to run as root, so the server tools run as the ``postgres`` user; the
cluster lives in a temp dir, listens on a free loopback port, and is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from deploy.ports import free_port


def _pg_bin() -> Path:
    for version in ("17", "16", "15"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin")
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int
    pid: int | None = None

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> None:
        pg = _pg_bin()
        self.data_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres")
        subprocess.run(
            self._as_postgres(
                str(pg / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            self._as_postgres(
                str(pg / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                f"{self.data_dir}.log",
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=600",
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.pid is None:
            return
        subprocess.run(
            self._as_postgres(
                str(_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"
            ),
            capture_output=True,
        )
        self.pid = None

    def discard(self) -> bool:
        """Stop the cluster and remove the temp dir ``start_throwaway_cluster`` made for it
        (data and log: hundreds of MB after a load).  Kept if the server did not stop (its
        postmaster.pid remains): no files are removed under a running server.  Whether it
        was removed."""
        self.stop()
        if (self.data_dir / "postmaster.pid").exists():
            return False
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        return True

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_throwaway_cluster() -> PostgresCluster:
    """A cluster in a fresh temp dir; ``.discard()`` stops it and removes the dir."""
    root = Path(tempfile.mkdtemp(prefix="sb-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")  # the server writes its log beside the data dir
    cluster = PostgresCluster(data_dir=root / "data", port=free_port())
    cluster.start()
    return cluster
