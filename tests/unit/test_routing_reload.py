"""The routing file is read again when it changes; a bad edit keeps the last good one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.router.config import RoutingConfigError
from services.router.service import ReloadingConfig

GOOD = "default_queue: support\nqueues:\n  support: {}\n  sales: {}\n"
BETTER = "default_queue: sales\nqueues:\n  support: {}\n  sales: {}\n"
BAD = "default_queue: nowhere\nqueues:\n  support: {}\n"


def write(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a distinct mtime on coarse filesystems


def test_an_edit_is_in_force_at_the_next_check_and_a_bad_one_is_refused_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routing.yaml"
    write(path, GOOD, 1)
    config = ReloadingConfig(path, check_every_s=0)
    assert config.current.default_queue == "support" and config.error is None

    write(path, BETTER, 2)
    assert config.current.default_queue == "sales"

    write(path, BAD, 3)
    assert config.current.default_queue == "sales"  # the last good one stays
    assert config.error is not None and "default_queue" in config.error and ":1:" in config.error
    assert "was not reloaded, the last good one stays" in caplog.text

    write(path, GOOD, 4)  # fixed: in force again, the error cleared
    assert config.current.default_queue == "support" and config.error is None


def test_a_bad_file_at_start_is_refused_outright(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, BAD, 1)
    with pytest.raises(RoutingConfigError, match="default_queue"):
        ReloadingConfig(path)
