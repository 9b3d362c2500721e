"""Run one engine command (`python -m MammoSynthLogic ... --progress-json`) in the background.

Plain Python, no Qt and no Slicer: the widget polls `EngineJob.poll()` from a QTimer, the test suite and
Slicer's Python console call `wait()`. The process runs in its own process group (a new session on POSIX),
so cancelling kills the whole tree; outputs the job had not finished are removed.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

ENGINE_PACKAGE = "MammoSynthLogic"
CANCEL_GRACE_S = 3.0
WINDOWS = os.name == "nt"


def default_python() -> str:
    """The interpreter that runs the engine: Slicer's `PythonSlicer` inside Slicer, this interpreter elsewhere."""
    name = Path(sys.executable).name.lower()
    if "slicer" in name and "python" not in name:  # inside the Slicer application: use its Python launcher
        found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=str(Path(sys.executable).parent))
        if found:
            return found
    return sys.executable


def engine_command(args: Sequence[str], python: Optional[str] = None) -> list[str]:
    """Command line of one engine call with machine-readable progress."""
    return [python or default_python(), "-m", ENGINE_PACKAGE, *map(str, args), "--progress-json"]


class JobFailed(RuntimeError):
    """The engine exited non-zero; the message is its one-line `error: <what>: <why>`."""


class EngineJob:
    """One engine process: start, poll events without blocking, cancel, read result or error.

    Cancel removes the `outputs` that did not exist at start, and the `owned` ones (made for the job beforehand,
    e.g. a job folder holding its input mask) although they did.
    """

    def __init__(self, command: Sequence[str], *, outputs: Sequence[str | os.PathLike] = (),
                 engine_path: Optional[str | os.PathLike] = None, env: Optional[dict] = None,
                 cwd: Optional[str | os.PathLike] = None, owned: Sequence[str | os.PathLike] = ()):
        self.command = [str(c) for c in command]
        self.owned = [Path(p) for p in owned]
        self.outputs = list(dict.fromkeys([*map(Path, outputs), *self.owned]))
        self.engine_path = engine_path
        self.env = env
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.result: Optional[dict] = None
        self.error: Optional[str] = None
        self.progress: Optional[tuple[str, int, int]] = None
        self.cancelled = False
        self._events: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        self._readers: list[threading.Thread] = []
        self._existed: set[Path] = set()

    # ------------------------------------------------------------ starting

    def _environment(self) -> dict:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        if self.engine_path is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.engine_path), env.get("PYTHONPATH", "")) if p)
        return env

    def start(self) -> "EngineJob":
        self._existed = {p for p in self.outputs if p.exists() and p not in self.owned}
        group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW} \
            if WINDOWS else {"start_new_session": True}
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, env=self._environment(), cwd=self.cwd, **group)
        for stream, kind in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            reader = threading.Thread(target=self._read, args=(stream, kind), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, stream, kind: str) -> None:
        for line in stream:
            self._events.put((kind, line.rstrip("\r\n")))
        stream.close()

    # ------------------------------------------------------------ polling

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None

    def poll(self) -> list[dict]:
        """Events (progress, log, result dicts) that arrived since the last call; never blocks.

        When the process has ended and its output is drained, `returncode` is set and, on failure, `error`.
        """
        if self.process is None or self.returncode is not None:
            return []
        # Finished only once the process has exited and both pipes are drained (checked before draining).
        finished = self.process.poll() is not None and not any(r.is_alive() for r in self._readers)
        events = []
        while True:
            try:
                kind, line = self._events.get_nowait()
            except queue.Empty:
                break
            event = self._parse(kind, line)
            if event is not None:
                events.append(event)
        if finished:
            self._finish(self.process.returncode)
        return events

    def _parse(self, kind: str, line: str) -> Optional[dict]:
        if not line.strip():
            return None
        if kind == "stderr":
            self._stderr.append(line)
            return None if line.startswith("error:") else {"type": "log", "message": line}
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return {"type": "log", "message": line}
        if not isinstance(event, dict):
            return {"type": "log", "message": line}
        if event.get("type") == "progress":
            self.progress = (str(event.get("stage", "")), int(event.get("done", 0)), int(event.get("total", 0)))
        elif event.get("type") == "result":
            self.result = {k: v for k, v in event.items() if k != "type"}
        return event

    def _finish(self, returncode: int) -> None:
        self.returncode = returncode
        if self.cancelled:
            self.error = "cancelled: no output written"
            self._remove_outputs()
        elif returncode != 0:
            errors = [line for line in self._stderr if line.startswith("error:")]
            last = errors[-1] if errors else (self._stderr[-1] if self._stderr else f"exit status {returncode}")
            self.error = last[len("error:"):].strip() if last.startswith("error:") else last

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> list[dict]:
        """Block until the job ends (console and tests); returns every event. Raises JobFailed on failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = []
        while self.running:
            events += self.poll()
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"{' '.join(self.command)}: no result within {timeout} s (cancelled)")
            time.sleep(interval)
        if self.error is not None:
            raise JobFailed(self.error)
        return events

    # ------------------------------------------------------------ cancelling

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Ask the engine to stop (it finishes no output), then kill its whole process tree; remove partial output."""
        if self.process is None or self.returncode is not None:
            return
        self.cancelled = True
        if self._ask_to_stop():
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._kill_tree()  # always: children that outlived the leader, or a leader that did not stop
        self.process.wait()
        while self.running:
            self.poll()

    def _ask_to_stop(self) -> bool:
        """SIGTERM to the process group (POSIX) or CTRL_BREAK (Windows); False when it could not be sent."""
        try:
            if WINDOWS:
                # Often undeliverable: the engine runs without a console (CREATE_NO_WINDOW) and the call raises.
                self.process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                os.killpg(self.process.pid, signal.SIGTERM)
        except (OSError, ValueError):
            return False
        return True

    def _kill_tree(self) -> None:
        if WINDOWS:
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.process.pid)], capture_output=True)
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_outputs(self) -> None:
        for path in self.outputs:
            if path not in self._existed:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
            for partial in path.parent.glob(f".{path.name}.*.part"):  # left by fileio.atomic_path when killed
                partial.unlink(missing_ok=True)


def run_engine(args: Sequence[str], *, outputs: Sequence[str | os.PathLike] = (), python: Optional[str] = None,
               engine_path: Optional[str | os.PathLike] = None, env: Optional[dict] = None) -> EngineJob:
    """Start one engine command with progress as JSON lines; returns the running job."""
    return EngineJob(engine_command(args, python), outputs=outputs, engine_path=engine_path, env=env).start()
