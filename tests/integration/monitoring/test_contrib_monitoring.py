"""contrib/prometheus/alerts.yml and contrib/grafana/postline.json read metrics a node
really serves, and Prometheus's own tool accepts them: ``promtool check rules`` on the
alerts, ``promtool test rules`` on their unit tests, and every dashboard query checked
as PromQL the same way."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import domain, internet

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "contrib/prometheus/alerts.yml"
ALERT_TESTS = ROOT / "contrib/prometheus/alerts_test.yml"
DASHBOARD = ROOT / "contrib/grafana/postline.json"
_METRIC = re.compile(r"\bpostline_[a-z_]+\b")


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (Debian package 'prometheus')")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return tool


def _dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert queries
    return queries


async def _served_names(tmp_path: Path) -> set[str]:
    # A node delivering to the sim (so the engine's families are there too).
    async with internet(
        tmp_path, [domain("inbox.test")], node_extra="[webhooks]\nenabled = true\n"
    ) as net:
        await net.send("ann@inbox.test")
        await net.settle(1)
        text = (await net.api.get("/metrics")).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
        names.update(s.name for s in family.samples)
    return names


async def test_alerts_and_dashboard_read_served_metrics(tmp_path: Path) -> None:
    served = await _served_names(tmp_path)
    used = set(_METRIC.findall(ALERTS.read_text()))
    used |= {m for q in _dashboard_queries() for m in _METRIC.findall(q)}
    assert used, "no metric found in the alerts or the dashboard"
    assert used <= served, f"not served by a node: {sorted(used - served)}"


def test_promtool_accepts_the_alerts_and_their_tests() -> None:
    tool = _promtool()
    checked = subprocess.run(
        [tool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_queries_are_promql(tmp_path: Path) -> None:
    tool = _promtool()
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # Each query as a recording rule: promtool parses it (Grafana's $instance as a regex).
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, query in enumerate(_dashboard_queries()):
        expr = query.replace("$instance", ".*")
        lines += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    checked = subprocess.run(
        [tool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_dashboard_is_importable_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] == "postline"
    names = {v["name"] for v in board["templating"]["list"]}
    assert names == {"datasource", "instance"}
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["refId"] and t["expr"] for t in panel["targets"])
