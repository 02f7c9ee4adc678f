"""The Grafana dashboard (deploy/grafana-dashboard.json) asks only for metrics the hub
serves, in PromQL that parses: a renamed metric breaks this test, not the operator's graphs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
from prometheus_client import REGISTRY

import services.metrics  # noqa: F401  (registers the hub's metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def served_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
            names.add(family.name + suffix)
    return names


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_every_panel_queries_served_metrics_in_valid_promql() -> None:
    served = served_names()
    exprs = expressions()
    assert len(exprs) >= 10
    for title, expr in exprs:
        promql_parser.parse(expr)  # raises on a syntax error
        used = set(re.findall(r"\bswitchboard_\w+", expr))
        assert used, f"{title}: queries no switchboard metric"
        assert used <= served, f"{title}: not served: {sorted(used - served)}"


def test_every_metric_the_hub_defines_is_on_the_dashboard() -> None:
    ours = {f.name for f in REGISTRY.collect() if f.name.startswith("switchboard_")}
    shown = {name for _, expr in expressions() for name in re.findall(r"\bswitchboard_\w+", expr)}
    stripped = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}
    assert ours <= stripped | shown, f"not on the dashboard: {sorted(ours - stripped - shown)}"


def test_a_broken_query_is_caught() -> None:
    try:
        promql_parser.parse("sum by (channel (rate(switchboard_interactions_recorded_total[1m]))")
    except ValueError:
        return
    raise AssertionError("the parser accepted an unbalanced query")
