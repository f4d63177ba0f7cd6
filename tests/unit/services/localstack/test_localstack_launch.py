"""The LocalStack launcher keeps kinesis-mock's state: repair of a truncated state file from its backup, and the stop
choreography (freeze LocalStack, let kinesis-mock flush on SIGTERM, back up, kill LocalStack), played with two
small stand-in processes that behave like LocalStack and kinesis-mock do (kinesis-mock in its own session, writing
its state file periodically and once more on SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from pipeline.settings import REPO_ROOT
from services.localstack.launch import PidFile, alive, backup, backup_path, repair_state

STATE = {"streams": {"streaming-7e57c0de0001-pin": {"records": [1, 2, 3]}}}


def test_a_complete_state_file_is_left_alone(tmp_path):
    path = tmp_path / "000000000000.json"
    path.write_text(json.dumps(STATE))
    assert repair_state(tmp_path) == []
    assert json.loads(path.read_text()) == STATE


def test_a_truncated_state_file_is_replaced_by_its_backup(tmp_path):
    path = tmp_path / "000000000000.json"
    path.write_text(json.dumps(STATE))
    assert backup(path)
    path.write_text(json.dumps(STATE)[:20])  # killed in the middle of a rewrite
    actions = repair_state(tmp_path)
    assert "restored the last complete backup" in actions[0]
    assert json.loads(path.read_text()) == STATE
    assert len(list(tmp_path.glob("000000000000.json.corrupt-*"))) == 1


def test_a_truncated_state_file_without_backup_is_set_aside(tmp_path):
    path = tmp_path / "000000000000.json"
    path.write_text('{"streams": {')
    assert "no usable backup" in repair_state(tmp_path)[0]
    assert not path.exists()


def test_an_incomplete_file_never_replaces_the_backup(tmp_path):
    path = tmp_path / "000000000000.json"
    path.write_text(json.dumps(STATE))
    assert backup(path)
    path.write_text('{"streams": ')
    assert not backup(path)
    assert json.loads(backup_path(path).read_text()) == STATE


def test_recorded_pids_of_other_programs_are_not_leftovers(tmp_path):
    pid_file = PidFile(tmp_path / "pids")
    pid_file.write({"localstack": [os.getpid()], "kinesis_mock": [os.getpid(), 999_999_999]})
    assert pid_file.leftovers() == {"localstack": [], "kinesis_mock": []}


FAKE_KINESIS = """
import json, signal, sys, time
path, count = sys.argv[1], 0
def write(flushed):
    with open(path, "w") as f:
        json.dump({"count": count, "flushed": flushed}, f)
def on_term(*_):
    write(True)
    sys.exit(143)  # like kinesis-mock: non-zero, so LocalStack would restart it
signal.signal(signal.SIGTERM, on_term)
while True:
    count += 1
    if count % 50 == 0:
        write(False)
    time.sleep(0.01)
"""

FAKE_LOCALSTACK = """
import subprocess, sys, time
# kinesis-local in the command line is how the launcher recognises kinesis-mock
subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2], "kinesis-local"], start_new_session=True)
while True:
    time.sleep(0.1)
"""


def test_stop_flushes_kinesis_mock_before_localstack_dies(tmp_path):
    (tmp_path / "kinesis.py").write_text(textwrap.dedent(FAKE_KINESIS))
    (tmp_path / "localstack.runtime.main.py").write_text(textwrap.dedent(FAKE_LOCALSTACK))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = state_dir / "000000000000.json"
    pid_file = tmp_path / "pids"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.localstack.launch",
            f"--kinesis-state={state_dir}",
            f"--pid-file={pid_file}",
            "--",
            sys.executable,
            str(tmp_path / "localstack.runtime.main.py"),
            str(tmp_path / "kinesis.py"),
            str(state),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    pids: dict = {}
    while not pids.get("kinesis_mock") and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = json.loads(pid_file.read_text()) if pid_file.exists() else {}
    assert pids.get("kinesis_mock"), "the launcher never recorded the stand-in kinesis-mock"
    launcher.send_signal(signal.SIGTERM)
    output, _ = launcher.communicate(timeout=30)
    assert launcher.returncode == 0, output
    final = json.loads(state.read_text())
    assert final["flushed"], "kinesis-mock was killed before it could flush"
    assert json.loads(backup_path(state).read_text()) == final
    for pid in pids["kinesis_mock"] + pids["localstack"]:
        assert not alive(pid), f"process {pid} survived the stop"
    assert not pid_file.exists()
