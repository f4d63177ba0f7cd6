"""Run LocalStack so that kinesis-mock's persisted streams survive a stop, a restart and most crashes.

LocalStack (open source) persists nothing itself, but its Kinesis backend, kinesis-mock, can: with
`PERSISTENCE=1` LocalStack starts it with `SHOULD_PERSIST_DATA=true` and a state file under
`<FILESYSTEM_ROOT>/var/lib/localstack/state/kinesis/<account>.json`, rewritten every `KINESIS_MOCK_PERSIST_INTERVAL`
and once more when kinesis-mock is stopped gracefully. Three gaps remain, and this supervisor closes them:

1. LocalStack stops kinesis-mock with SIGKILL, so the final flush never runs and the last interval is lost. Here a
   stop first freezes LocalStack (SIGSTOP, so it neither restarts kinesis-mock nor takes requests), sends kinesis-mock
   SIGTERM (it flushes and exits), backs the state up, and then kills the frozen LocalStack.
2. kinesis-mock rewrites the file in place, so a kill in the middle of a write leaves truncated JSON that the next
   kinesis-mock refuses to load. Every complete state is copied to `<file>.bak` (atomically) after the graceful
   flush and periodically while running; on start a file that is not valid JSON is replaced by its backup.
3. kinesis-mock runs in its own session, so it outlives a killed LocalStack and would keep rewriting the file. Its
   PID (and LocalStack's) is recorded; on start, leftovers with those PIDs and command lines are stopped (SIGTERM,
   which again flushes) before a new LocalStack starts.

Run by supervisord as `python -m services.localstack.launch --state-dir DIR --pid-file FILE -- <localstack argv>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from pipeline.processes import alive

KINESIS_MOCK_MARKER = "kinesis-local"  # kinesis-mock's npm package name, in its node command line
LOCALSTACK_MARKER = "localstack.runtime.main"
BACKUP_EVERY_SECONDS = 60.0
FLUSH_TIMEOUT_SECONDS = 15.0


def log(message: str) -> None:
    print(f"[localstack-launch] {message}", flush=True)


# --- state files ---------------------------------------------------------------------------------------------
def is_complete_json(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            json.load(handle)
    except (OSError, ValueError):
        return False
    return True


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def backup(path: Path) -> bool:
    """Copy a complete state file to its backup atomically; return False (and keep the old backup) otherwise."""
    if not is_complete_json(path):
        return False
    temporary = path.with_name(path.name + ".bak.tmp")
    shutil.copyfile(path, temporary)
    if not is_complete_json(temporary):  # rewritten while copying
        temporary.unlink(missing_ok=True)
        return False
    os.replace(temporary, backup_path(path))
    return True


def state_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("*.json"))


def repair_state(state_dir: Path) -> list[str]:
    """Replace truncated state files by their backups (or set them aside); return what was done."""
    actions = []
    for path in state_files(state_dir):
        if is_complete_json(path):
            continue
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        if is_complete_json(backup_path(path)):
            shutil.copyfile(backup_path(path), path)
            actions.append(f"{path.name} was truncated (kept as {aside.name}); restored the last complete backup")
        else:
            actions.append(f"{path.name} was truncated and has no usable backup; kept it as {aside.name}")
    return actions


# --- processes -------------------------------------------------------------------------------------------------
def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if alive(pid)]
        time.sleep(0.1)
    return not pending


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


class PidFile:
    """PIDs of the LocalStack and kinesis-mock processes this launcher started, for cleanup after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pids: dict[str, list[int]]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(pids))
        os.replace(temporary, self.path)

    def leftovers(self) -> dict[str, list[int]]:
        """Recorded PIDs that still run the same program (a PID reused by another program is ignored)."""
        try:
            recorded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        markers = {"kinesis_mock": KINESIS_MOCK_MARKER, "localstack": LOCALSTACK_MARKER}
        return {
            kind: [pid for pid in recorded.get(kind, []) if alive(pid) and marker in _cmdline(pid)]
            for kind, marker in markers.items()
        }


def kinesis_mock_pids(localstack_pid: int) -> list[int]:
    return [pid for pid in descendants(localstack_pid) if KINESIS_MOCK_MARKER in _cmdline(pid)]


def stop_leftovers(pid_file: PidFile) -> None:
    leftovers = pid_file.leftovers()
    kinesis, localstack = leftovers.get("kinesis_mock", []), leftovers.get("localstack", [])
    if not kinesis and not localstack:
        return
    log(f"stopping processes left by a previous run: kinesis-mock {kinesis}, LocalStack {localstack}")
    signal_all(localstack, signal.SIGSTOP)
    signal_all(kinesis, signal.SIGTERM)  # kinesis-mock flushes its state on SIGTERM
    if not wait_gone(kinesis, FLUSH_TIMEOUT_SECONDS):
        signal_all(kinesis, signal.SIGKILL)
    signal_all(localstack, signal.SIGKILL)
    wait_gone(localstack + kinesis, 5)


# --- the supervisor ----------------------------------------------------------------------------------------------
class Launcher:
    def __init__(self, command: list[str], kinesis_state: Path, pid_file: PidFile) -> None:
        self.command = command
        self.kinesis_state = kinesis_state
        self.pid_file = pid_file
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def backup_all(self) -> None:
        for path in state_files(self.kinesis_state):
            if not backup(path):
                log(f"{path.name} was being rewritten; its previous backup is kept")

    def _watch(self) -> None:
        """Record kinesis-mock's PIDs and back up complete state files while LocalStack runs."""
        last_backup, backed_up = 0.0, {}
        while not self.stopping.wait(1.0):
            assert self.process is not None
            self.pid_file.write({"localstack": [self.process.pid], "kinesis_mock": kinesis_mock_pids(self.process.pid)})
            if time.monotonic() - last_backup < BACKUP_EVERY_SECONDS:
                continue
            last_backup = time.monotonic()
            for path in state_files(self.kinesis_state):
                with contextlib.suppress(OSError):
                    mtime = path.stat().st_mtime_ns
                    if backed_up.get(path) != mtime and backup(path):
                        backed_up[path] = mtime

    def stop(self) -> None:
        """Freeze LocalStack, let kinesis-mock flush and exit, back its state up, then kill LocalStack."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGSTOP)
        kinesis = kinesis_mock_pids(process.pid)
        signal_all(kinesis, signal.SIGTERM)
        if kinesis and not wait_gone(kinesis, FLUSH_TIMEOUT_SECONDS):
            log(f"kinesis-mock did not exit {FLUSH_TIMEOUT_SECONDS:.0f} s after SIGTERM; killing it")
            signal_all(kinesis, signal.SIGKILL)
        self.backup_all()
        # LocalStack's own shutdown would restart kinesis-mock (it exited non-zero) and then SIGKILL it, and has been
        # seen to hang there. The open-source edition holds nothing else worth saving (API Gateway and IAM live in
        # memory and are re-provisioned), so it is killed while still frozen.
        signal_all([*descendants(process.pid), process.pid], signal.SIGKILL)
        process.wait()

    def run(self) -> int:
        self.kinesis_state.mkdir(parents=True, exist_ok=True)
        stop_leftovers(self.pid_file)
        for action in repair_state(self.kinesis_state):
            log(action)
        # LocalStack gets its own process group: supervisord's stop signal reaches only this launcher, which stops
        # LocalStack in the right order. If the launcher itself is killed, the kernel kills LocalStack (PDEATHSIG).
        self.process = subprocess.Popen(self.command, start_new_session=True, preexec_fn=_die_with_parent)
        self.pid_file.write({"localstack": [self.process.pid], "kinesis_mock": []})
        stop_requested = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log(f"received {signal.Signals(signum).name}: flushing Kinesis state, then stopping LocalStack")
            stop_requested.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        threading.Thread(target=self._watch, name="watch", daemon=True).start()
        # Poll rather than block in wait(): the stop sequence must run outside a signal handler.
        while self.process.poll() is None:
            if stop_requested.wait(0.2):
                self.stopping.set()
                self.stop()
        self.stopping.set()
        code = self.process.returncode
        if not stop_requested.is_set():
            log(f"LocalStack exited by itself with code {code}")
        # kinesis-mock outlives LocalStack (own session); a recorded survivor is stopped gracefully so it flushes.
        survivors = self.pid_file.leftovers().get("kinesis_mock", [])
        signal_all(survivors, signal.SIGTERM)
        if not wait_gone(survivors, FLUSH_TIMEOUT_SECONDS):
            signal_all(survivors, signal.SIGKILL)
        self.pid_file.path.unlink(missing_ok=True)
        return 0 if stop_requested.is_set() else (code or 1)


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.localstack.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--kinesis-state", type=Path, required=True, help="kinesis-mock's PERSIST_PATH")
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the LocalStack command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("missing the LocalStack command after --")
    return Launcher(command, args.kinesis_state, PidFile(args.pid_file)).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
