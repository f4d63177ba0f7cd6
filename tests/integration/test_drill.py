"""`make drill` as CI's smoke of the chaos run: one round of batch-path load through API Gateway with a kill -9 of the
REST proxy in the middle, then the audit of the drill's own ledger run. Nothing acknowledged may be lost, nothing
doubled; records in flight at the kill are reported possibly written, not re-sent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.settings import REPO_ROOT


@pytest.mark.timeout(900)
def test_a_drill_round_with_a_kill_9_of_the_rest_proxy_loses_and_doubles_nothing(stack, run_module, child_env):
    stack("mysql", "kafka", "rest_proxy", "connect", "s3", "localstack")
    seeded = run_module("services.mysql.seed", "--rows", "500", "--seed", "3")
    assert seeded.returncode == 0, seeded.stdout[-2000:] + seeded.stderr[-2000:]
    provisioned = run_module("services.provision", timeout=600)  # the test user's topics, bucket and connector
    assert provisioned.returncode == 0, provisioned.stdout[-2000:] + provisioned.stderr[-2000:]
    drill = subprocess.run(
        [sys.executable, "-m", "services.drill", "--rounds", "1", "--only", "rest_proxy", "--paths", "batch",
         "--posts", "200", "--rate", "40", "--seed", "7", "--wait", "120"],
        cwd=REPO_ROOT, env=child_env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    output = drill.stdout + drill.stderr
    assert drill.returncode == 0, output[-4000:]
    assert "round 1/1: batch path, kill -9 rest_proxy" in output, output[-4000:]
    summary = next(line for line in output.splitlines() if line.startswith("drill summary:"))
    assert "lost 0, doubled 0" in summary and "rest_proxy x1" in summary, summary
    acked = int(summary.split("acked ")[1].split(",")[0])
    assert acked > 0, f"nothing was acknowledged: the round tested nothing\n{output[-4000:]}"
    assert "OK: all" in output, output[-4000:]
