"""The Slicer module's background runner: JSON-lines progress, cancel of the whole process tree, errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SlicerMammoSynth"))

from SlicerMammoSynthLib.runner import EngineJob, JobFailed, default_python, engine_command  # noqa: E402

# A stand-in for an engine command: progress as JSON lines, a child process, an atomic output in progress.
FAKE_ENGINE = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    out, gate, pids = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    def emit(**event):
        print(json.dumps(event), flush=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pids.write_text(f"{os.getpid()} {child.pid}")
    emit(type="log", message="model loaded")
    emit(type="progress", stage="global", done=1, total=3)
    while not gate.exists():           # the test opens the gate once it has seen the first progress line
        time.sleep(0.01)
    partial = out.parent / f".{out.name}.abc.part"
    partial.write_bytes(b"half an image")
    emit(type="progress", stage="global", done=2, total=3)
    if os.environ.get("FAKE_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # an engine that does not react: only SIGKILL ends it
    while not gate.with_suffix(".2").exists():
        time.sleep(0.01)
    emit(type="progress", stage="global", done=3, total=3)
    partial.replace(out)
    child.kill()
    emit(type="result", out=str(out))
""")


@pytest.fixture()
def fake_engine(tmp_path):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    out = tmp_path / "result.dcm"
    gate = tmp_path / "gate"
    pids = tmp_path / "pids"
    return [sys.executable, str(script), str(out), str(gate), str(pids)], out, gate, pids


def _poll_until(job: EngineJob, predicate, limit_s: float = 30.0) -> list[dict]:
    events = []
    deadline = time.monotonic() + limit_s
    while not predicate(events):
        assert time.monotonic() < deadline, f"gave up waiting; events so far: {events}"
        events += job.poll()
        time.sleep(0.01)
    return events


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_progress_is_parsed_incrementally_and_the_result_arrives(fake_engine):
    command, out, gate, _ = fake_engine
    job = EngineJob(command, outputs=[out]).start()
    first = _poll_until(job, lambda ev: any(e["type"] == "progress" for e in ev))
    assert job.running, "the first progress line must be readable while the job still runs"
    assert first[0] == {"type": "log", "message": "model loaded"}
    assert job.progress == ("global", 1, 3)
    gate.touch()
    gate.with_suffix(".2").touch()
    rest = job.wait(timeout=30)
    done = [e["done"] for e in first + rest if e["type"] == "progress"]
    assert done == [1, 2, 3]
    assert job.returncode == 0 and job.error is None
    assert job.result == {"out": str(out)}
    assert out.read_bytes() == b"half an image"


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_cancel_kills_the_process_tree_and_leaves_no_output(fake_engine, monkeypatch, ignores_sigterm):
    if os.name == "nt":
        pytest.skip("POSIX process groups")
    command, out, gate, pids = fake_engine
    if ignores_sigterm:
        monkeypatch.setenv("FAKE_IGNORE_SIGTERM", "1")
    job = EngineJob(command, outputs=[out]).start()
    _poll_until(job, lambda ev: any(e["type"] == "progress" for e in ev))
    gate.touch()
    _poll_until(job, lambda ev: any(e.get("done") == 2 for e in ev))
    assert list(out.parent.glob(".result.dcm.*.part")), "the fake engine should have started writing"
    parent, child = map(int, pids.read_text().split())
    assert _alive(child)
    job.cancel(grace_s=0.5)
    assert not job.running and job.cancelled
    assert job.error == "cancelled: no output written"
    assert not _alive(parent) and not _alive(child), "cancel must kill the engine and its children"
    assert not out.exists() and not list(out.parent.glob(".result.dcm.*.part"))


def test_a_failing_jobs_one_line_error_reaches_the_caller(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text("import sys\nprint('some warning', file=sys.stderr)\n"
                      "print('error: /data/x.dcm: not a DICOM file (no DICM preamble)', file=sys.stderr)\nsys.exit(2)\n")
    job = EngineJob([sys.executable, str(script)]).start()
    with pytest.raises(JobFailed, match=r"^/data/x\.dcm: not a DICOM file \(no DICM preamble\)$"):
        job.wait(timeout=30)
    assert job.returncode == 2
    assert job.error == "/data/x.dcm: not a DICOM file (no DICM preamble)"


def test_the_real_engine_error_reaches_the_caller(tmp_path):
    """`python -m MammoSynthLogic` on a file that is not a mammogram: its one-line error comes through."""
    import MammoSynthLogic.cli as cli

    if "info" not in cli.build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("the engine has no `info` command yet")
    bad = tmp_path / "not_a_mammogram.dcm"
    bad.write_text("hello")
    job = EngineJob(engine_command(["info", str(bad)], python=sys.executable), engine_path=ROOT).start()
    with pytest.raises(JobFailed) as failure:
        job.wait(timeout=50)
    assert job.returncode != 0
    assert str(bad) in str(failure.value) and "\n" not in str(failure.value)


def test_engine_command_runs_the_package_with_json_progress():
    command = engine_command(["generate", "--seed", 3, "--out", "x.dcm"], python="/opt/PythonSlicer")
    assert command == ["/opt/PythonSlicer", "-m", "MammoSynthLogic", "generate", "--seed", "3", "--out", "x.dcm",
                       "--progress-json"]
    assert default_python() == sys.executable  # outside Slicer


def _module_logic_function(name: str):
    """A static method of `SlicerMammoSynthLogic` taken from the module source (the module itself needs Slicer)."""
    import ast
    import typing

    tree = ast.parse((ROOT / "SlicerMammoSynth" / "SlicerMammoSynth.py").read_text())
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SlicerMammoSynthLogic")
    function = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == name)
    function.decorator_list = []
    tasks = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TASKS")
    namespace = {"Optional": typing.Optional}
    exec(compile(ast.Module([tasks, function], []), "SlicerMammoSynth.py", "exec"), namespace)
    return namespace[name]


def _module_engine_arguments():
    return _module_logic_function("engineArguments")


def _engine_parser_with(*commands):
    from MammoSynthLogic.cli import build_parser

    parser = build_parser()
    missing = set(commands) - set(parser._subparsers._group_actions[0].choices)
    if missing:
        pytest.skip(f"the engine has no {', '.join(sorted(missing))} command yet")
    return parser


def test_the_modules_engine_calls_parse_with_the_engines_command_line(tmp_path):
    from MammoSynthLogic.cli import build_parser

    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    if not {"generate", "upscale"} <= set(choices):
        pytest.skip("the engine has no generate/upscale commands yet")
    engine_arguments = _module_engine_arguments()
    out = str(tmp_path / "o.dcm")
    generate = parser.parse_args(engine_command(engine_arguments("Generate", out, model="/m", seed=3, size=512))[3:])
    assert (generate.command, generate.seed, generate.size, generate.model, str(generate.out)) == \
        ("generate", 3, 512, ["/m"], out)
    assert generate.progress_json and generate.preset == "fast" and generate.device == "auto"
    upscale = parser.parse_args(engine_command(engine_arguments("Upscale", out, source="/s.dcm", preset="paper"))[3:])
    assert upscale.command == "upscale" and upscale.preset == "paper" and "/s.dcm" in map(str, vars(upscale).values())
    with pytest.raises(ValueError, match="source"):
        engine_arguments("Upscale", out)


def test_the_modules_anomaly_call_parses_with_the_engines_anomaly_command(tmp_path):
    parser = _engine_parser_with("anomaly")
    anomaly_arguments = _module_logic_function("anomalyArguments")
    out = tmp_path / "anomaly-1"
    # the sliders hand over floats: lambda 640.0 must reach the engine as the int 640
    command = anomaly_arguments("/s.dcm", str(out), model="/m", lam=640.0, threshold=0.45, level="native", seed=7,
                                device="cpu")
    args = parser.parse_args(engine_command(command)[3:])
    assert (args.command, [str(p) for p in args.paths], str(args.out)) == ("anomaly", ["/s.dcm"], str(out))
    assert (args.lam, args.threshold, args.level, args.model, args.seed, args.device) == \
        (640, 0.45, "native", ["/m"], 7, "cpu")
    assert args.progress_json
    defaults = parser.parse_args(engine_command(anomaly_arguments("/s.dcm", str(out)))[3:])
    assert (defaults.lam, defaults.threshold, defaults.level, defaults.model) == (700, 0.3, "global", None)
    with pytest.raises(ValueError, match="source"):
        anomaly_arguments("", str(out))


def test_the_modules_dual_view_calls_parse_with_the_engines_dualview_command(tmp_path):
    parser = _engine_parser_with("dualview")
    dualview_arguments = _module_logic_function("dualviewArguments")
    out = str(tmp_path / "pair")
    pair = parser.parse_args(engine_command(dualview_arguments(out, seed=5, laterality="R", size=1024,
                                                               model="/dv", preset="paper"))[3:])
    assert (pair.command, str(pair.out), pair.complete, pair.seed, pair.laterality, pair.size, pair.model,
            pair.preset) == ("dualview", out, None, 5, "R", 1024, "/dv", "paper")
    assert pair.progress_json
    complete = parser.parse_args(engine_command(dualview_arguments(out, complete="/cc.dcm", seed=1))[3:])
    assert (str(complete.complete), complete.laterality, complete.size, complete.keep_identity) == \
        ("/cc.dcm", None, None, False), "the generated view keeps a synthetic identity in its DICOM header"


def test_cancel_on_windows_always_ends_the_process_tree(monkeypatch):
    """The Windows branch, with stand-ins for the OS calls: the engine runs without a console (CREATE_NO_WINDOW), so
    CTRL_BREAK_EVENT cannot reach it and sending it raises OSError; `taskkill /T /F` must still end the tree."""
    import SlicerMammoSynthLib.runner as runner

    calls = []

    class WindowsProcess:
        """subprocess.Popen on Windows, as far as cancel() uses it."""

        pid, returncode = 4242, None

        def send_signal(self, sig):
            calls.append(("send_signal", sig))
            raise OSError(6, "The handle is invalid")

        def wait(self, timeout=None):
            if not any(call[0] == "run" for call in calls):
                raise subprocess.TimeoutExpired("engine", timeout)  # only taskkill ends it
            self.returncode = 1
            return 1

        def poll(self):
            return self.returncode

    monkeypatch.setattr(runner, "WINDOWS", True)
    monkeypatch.setattr(runner.signal, "CTRL_BREAK_EVENT", 1, raising=False)
    monkeypatch.setattr(runner.subprocess, "run", lambda command, **kwargs: calls.append(("run", command)))
    job = EngineJob(["python", "-m", "MammoSynthLogic", "generate"])
    job.process = WindowsProcess()
    job.cancel(grace_s=0.01)
    assert ("run", ["taskkill", "/T", "/F", "/PID", "4242"]) in calls
    assert job.cancelled and job.returncode == 1 and not job.running
