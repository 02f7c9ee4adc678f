"""Free loopback ports for the servers we launch (Kafka, PostgreSQL, test mail servers).

Never from the kernel's ephemeral range (Linux: 32768-60999): every outgoing connection
takes a port from there, so a broker restarted on its old port could find it taken by a
client socket ("Address already in use").  We pick below that range and check each port.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
_LOWEST = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def port_in_use(port: int) -> bool:
    # SO_REUSEADDR like the JVM's server sockets: TIME_WAIT leftovers of a last run don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports, free now and outside the ephemeral range."""
    low, high = ephemeral_range()
    candidates = [
        p for p in range(_LOWEST, 65536) if not low <= p <= high and p not in (19092, 19093)
    ]
    random.shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if not port_in_use(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free loopback port outside the ephemeral range")


def free_port() -> int:
    return free_ports(1)[0]
