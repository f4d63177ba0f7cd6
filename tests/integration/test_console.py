"""The console in a real headless browser (Debian's Chromium driven by Playwright), against the running stack.

The stack's own console (started by `make up`) must answer. The data checks use a console process of the test's
user id and state folder, so a user's data is never shown or touched: seed -> provision -> the emulator on both
paths -> the streaming job until idle -> the batch job -> the page. Then the flow must show the counts of `make
verify`'s audit and of the Delta tables, a topic's messages and an S3 object must open, a traced record must show its
offset, object and batch result and its Delta row, and no page may log a console error. Screenshots go to
`.state/test-artifacts/console/` (CI keeps them).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import boto3
import httpx
import pytest

from pipeline import layout
from pipeline.settings import REPO_ROOT, TABLES, load_settings
from services.audit.ledger_audit import read_delta
from services.stack import host_state_dir
from tests.support.kafka import end_offsets
from tests.support.kinesis import stream_records

USER = "7e57c0de0c0e"
DATABASE = "pinterest_data_console"
ROWS = 300
POSTS = 40
ARTIFACTS = REPO_ROOT / ".state" / "test-artifacts" / "console"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: scripts/install_chromium.sh (make setup runs it)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_stacks_console_serves_the_flow(stack, settings):
    """`make up` started the console (both modes): it is ready and its flow answers for the stack's user."""
    stack("console")
    base = load_settings().console_url
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200 and "flow-batch" in page.text
    flow = httpx.get(f"{base}/api/flow", timeout=30).json()
    assert [s["name"] for s in flow["batch"]] == ["emulator", "gateway", "kafka", "s3", "batch"]
    assert [s["name"] for s in flow["stream"]] == ["emulator", "gateway", "kinesis", "streaming job", "delta"]


@pytest.fixture(scope="module")
def console(stack, stack_control, run_module, tmp_path_factory):
    if stack_control.mode == "docker":
        pytest.skip("the browser test runs in native mode (CI); Docker mode checks the stack's console above")
    stack("mysql", "kafka", "rest_proxy", "connect", "s3", "localstack", "kinesis")
    state = tmp_path_factory.mktemp("console-state")
    # the test's own state folder; the venvs and jars stay the stack's
    env = {
        "PIPELINE_USER_ID": USER,
        "MYSQL_DATABASE": DATABASE,
        "STATE_DIR": str(state),
        "INSTALL_DIR": str(host_state_dir()),
    }
    settings = load_settings(
        pipeline_user_id=USER, mysql_database=DATABASE, state_dir=state, install_dir=host_state_dir()
    )
    for module, *args in (("services.mysql.seed", "--rows", str(ROWS), "--seed", "5"), ("services.provision",)):
        result = run_module(module, *args, env=env, timeout=600)
        assert result.returncode == 0, f"{module}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    # The streams are new (the session's end deletes the tests' streams); so must the Delta tables be, with their
    # checkpoints, for the Delta count to be this run's. Topics and objects of earlier runs stay: the checks count them.
    delete_prefix(settings, layout.DELTA_DIR + "/")
    for mode, seed in (("batch", "11"), ("stream", "12")):
        result = run_module("emulator", "--mode", mode, "--count", str(POSTS), "--burst", "--seed", seed, env=env)
        assert result.returncode == 0, f"emulator: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    child = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PIPELINE_ENV_FILE": os.devnull, **env}
    stream = subprocess.run(
        [sys.executable, "-m", "spark_jobs.stream", "--trigger-seconds", "1", "--until-idle", "8"],
        cwd=REPO_ROOT, env=child, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert stream.returncode == 0, stream.stdout[-3000:] + stream.stderr[-3000:]
    audit = run_module("services.audit", "--wait", "90", env=env, timeout=600)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    batch = run_module("spark_jobs.batch", env=env, timeout=900)
    assert batch.returncode == 0, batch.stdout[-3000:] + batch.stderr[-3000:]

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.console"],
        cwd=REPO_ROOT,
        env={**child, "CONSOLE_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"the console did not start: {process.stdout.read()}")
    yield base, settings, audit.stdout
    process.terminate()
    process.wait(timeout=15)


def delete_prefix(settings, prefix: str) -> None:
    s3 = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys})


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    page.close()
    assert problems == [], f"the page logged errors: {problems}"


def audit_numbers(text: str) -> dict[str, int]:
    """From `make verify`'s output: records acknowledged per path (its ledger table, this run's ledger) and the
    offsets found in S3 (its offset table: every offset of the user's topics, earlier runs' too)."""
    numbers = {"batch": 0, "stream": 0, "in_s3": 0}
    for line in text.splitlines():
        ledger = re.match(r"^(batch|stream)\s+\S+\s+(\d+)\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s*$", line)
        if ledger:
            numbers[ledger.group(1)] += int(ledger.group(2))
        offsets = re.match(r"^\S+\.(pin|geo|user)\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\d+\s+\d+\s+\d+\s*$", line)
        if offsets:
            numbers["in_s3"] += int(offsets.group(2))
    return numbers


def stage_count(page, path: str, stage: str) -> str:
    return page.locator(f"#flow-{path} tr[data-stage='{stage}'] td.count").inner_text()


def test_the_flow_shows_the_counts_of_the_audit_and_the_delta_tables(console, page):
    base, settings, audit = console
    numbers = audit_numbers(audit)
    assert numbers["batch"] == numbers["stream"] == POSTS * 3, audit
    kafka = sum(sum(end_offsets(settings, settings.topic(table)).values()) for table in TABLES)
    kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    in_kinesis = sum(len(list(stream_records(kinesis, settings.stream(table)))) for table in TABLES)
    delta = sum(
        len(read_delta(settings, layout.table_path(settings.warehouse_uri, name), ["sequence_number"]) or [])
        for name in [*settings.delta_tables, settings.stream_quarantine_table]
    )
    assert numbers["in_s3"] == kafka and delta == in_kinesis == POSTS * 3

    page.goto(f"{base}/")
    page.wait_for_selector("#flow-stream tr[data-stage='delta'] td.count")
    # the S3 and Delta counts come from caches of a few seconds: wait for them to settle on the expected numbers
    expected = {
        ("batch", "emulator"): numbers["batch"],
        ("batch", "kafka"): kafka,
        ("batch", "s3"): numbers["in_s3"],
        ("stream", "emulator"): numbers["stream"],
        ("stream", "kinesis"): in_kinesis,
        ("stream", "delta"): delta,
    }
    deadline = time.monotonic() + 30
    while True:
        seen = {key: stage_count(page, *key) for key in expected}
        if all(seen[key] == str(value) for key, value in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "flow.png"), full_page=True)
    assert seen == {key: str(value) for key, value in expected.items()}
    assert page.locator("#flow-batch tr[data-stage='batch'] td.detail").inner_text().startswith("last run")
    assert "9 of 9 results" in page.locator("#flow-batch tr[data-stage='batch'] td.detail").inner_text()


def test_a_topic_and_an_object_open(console, page):
    base, settings, _ = console
    topic = settings.topic("pin")
    page.goto(f"{base}/topics?topic={topic}")
    messages = page.locator("#messages tbody tr")
    assert messages.count() >= 1
    assert '"index"' in page.locator("#messages tbody tr td pre").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "topic.png"), full_page=True)

    page.goto(f"{base}/bucket?prefix=topics/{topic}/")
    page.locator("#listing a").first.click()  # partition=0/
    page.locator("#listing a.object").first.click()
    page.wait_for_selector("#lines tbody tr")
    assert '"index"' in page.locator("#lines tbody tr td pre").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "object.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_text("download").first.click()
    assert download.value.suggested_filename.startswith(f"{topic}+")

    page.goto(f"{base}/delta?table={settings.delta_table('geo')}")
    assert page.locator("#rows tbody tr").count() > 0
    page.goto(f"{base}/results")
    page.locator("#report-link").click()
    page.wait_for_load_state()
    assert "popular_category_by_country" in page.content()
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)


def test_a_traced_record_shows_its_offset_object_result_and_delta_row(console, page):
    base, settings, _ = console
    from emulator import ledger

    entries = ledger.load(ledger.ledger_dir(settings)).entries
    row = next(e["row"] for e in entries if e["path"] == "batch" and e["table"] == "pin" and e["outcome"] == "acked")
    kafka = next(e for e in entries if e["row"] == row and e["path"] == "batch" and e["table"] == "pin")
    page.goto(f"{base}/trace?ind={row}")
    page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)
    text = page.locator("main").inner_text()
    assert f"offset {kafka['offset']}" in text
    assert layout.partition_prefix(settings.topic("pin"), kafka["partition"]) in text  # the object's key
    batch = page.locator("td.batch").first.inner_text()
    assert batch.startswith("cleaned") or batch.startswith("quarantined"), batch
    if any(e["row"] == row and e["path"] == "stream" for e in entries):
        assert "in table" in page.locator("td.delta").first.inner_text() or "quarantined" in text

    # the same trace on the command line (make trace)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PIPELINE_ENV_FILE": os.devnull,
           "PIPELINE_USER_ID": USER, "STATE_DIR": str(settings.state_dir)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "services.console.trace", "--ind", str(row)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"offset {kafka['offset']}" in result.stdout and "batch   " in result.stdout


def test_the_services_page_and_a_log_tail(console, page):
    base, _, _ = console
    page.goto(f"{base}/services")
    names = page.locator("#services tbody tr td:first-child").all_inner_texts()
    assert {"kafka", "rest_proxy", "console"} <= set(names)
    page.screenshot(path=str(ARTIFACTS / "services.png"), full_page=True)
    page.goto(f"{base}/services/log?name=kafka")
    assert page.locator("body").inner_text().strip() != ""
