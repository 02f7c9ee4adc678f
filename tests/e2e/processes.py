"""Hub processes as children a test can SIGKILL and restart, stopped by PID at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deploy.ports import free_port
from services.bootstrap.settings import Settings
from tests.helpers import settings_env


class ChildProcess:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, no goodbye to the consumer group."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class RecorderProcess(ChildProcess):
    """`switchboard serve recorder` with the test's settings."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "services", "serve", "recorder", "--log-level", "INFO"],
            log_path,
            # Each recorder process serves its probes and metrics on a port of its own.
            env={
                **os.environ,
                **settings_env(settings),
                "SWITCHBOARD_HTTP_PORT": str(free_port()),
            },
        )

    def assignments(self) -> list[str]:
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if "partitions assigned" in line
        ]
