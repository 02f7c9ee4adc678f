"""The ports the test fixtures give servers (the hub's API) come from outside the kernel's
ephemeral range, like the brokers' (``deploy.ports``): a port chosen by binding port 0 is one
an outgoing connection can take before the server listens on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deploy.ports
from deploy.ports import ephemeral_range
from tests.gateways import free_port

TESTS = Path(__file__).resolve().parents[1]
# Files that pick a port for a server started later (not a socket they keep listening on).
PICKING_PORTS = ["gateways.py", "integration/test_openapi_conformance.py"]


def test_the_gateway_fixtures_port_is_outside_the_ephemeral_range() -> None:
    assert free_port is deploy.ports.free_port
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(20)]
    assert not [p for p in ports if low <= p <= high]


@pytest.mark.parametrize("name", PICKING_PORTS)
def test_no_fixture_picks_a_port_by_binding_port_zero(name: str) -> None:
    tree = ast.parse((TESTS / name).read_text(encoding="utf-8"))
    binds_zero = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "bind"
        and node.args
        and isinstance(node.args[0], ast.Tuple)
        and isinstance(node.args[0].elts[-1], ast.Constant)
        and node.args[0].elts[-1].value == 0
    ]
    assert binds_zero == [], f"{name} binds port 0 (the ephemeral range) at {binds_zero}"
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "deploy.ports"
        for alias in node.names
    }
    assert "free_port" in imported
