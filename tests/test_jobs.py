"""What a job prints and where the rest goes (mtmh/job_output.py), the way a user runs jobs:
in process through `run_job`, and as `python ray_jobs/...` and the `mtmh` command."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from mtmh.config import build_config, save_config
from mtmh.errors import MtmhError
from mtmh.job_output import JobOutput, run_job
from mtmh.versions import promote, write_version
from tests.tiny_data import write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


def _noisy(out: JobOutput) -> int:
    """A job body that writes everywhere a library might."""
    out.console.print("for the person")
    print("print to stdout")
    os.write(2, b"raw bytes on fd 2\n")
    logging.getLogger("some.library").info("a log record")
    warnings.warn("a library warning", UserWarning, stacklevel=1)
    return 0


def test_a_quiet_job_shows_only_its_console_and_logs_the_rest(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run_job("noisy", tmp_path, verbose=False, body=_noisy) == 0
    out, err = capfd.readouterr()
    assert out.strip() == "for the person" and err == ""
    log = (tmp_path / "logs" / "noisy.log").read_text()
    for text in ("print to stdout", "raw bytes on fd 2", "a log record", "a library warning"):
        assert text in log
    print("after the job")  # the descriptors are the terminal's again
    assert capfd.readouterr().out == "after the job\n"


def test_a_verbose_job_shows_everything_and_still_logs_its_records(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run_job("noisy", tmp_path, verbose=True, body=_noisy) == 0
    out, err = capfd.readouterr()
    assert "for the person" in out and "print to stdout" in out
    assert "raw bytes on fd 2" in err and "a log record" in err
    assert "a log record" in (tmp_path / "logs" / "noisy.log").read_text()


LATE_WORKER_JOB = """
import sys, time
from pathlib import Path
import ray
from mtmh.config import RayConfig
from mtmh.job_output import run_job
from mtmh.ray_utils import init_ray

@ray.remote(num_cpus=0)
class Chatty:  # goes on printing after the job's body returned, as Ray Train's actors may
    def start(self) -> None:
        import threading
        def chat() -> None:
            while True:
                print("late worker line", flush=True)
                time.sleep(0.1)
        threading.Thread(target=chat, daemon=True).start()

def body(out) -> int:
    init_ray(RayConfig())  # joins the cluster in RAY_ADDRESS
    global chatty
    chatty = Chatty.remote()
    ray.get(chatty.start.remote())
    time.sleep(1.0)
    return 0

status = run_job("late", Path(sys.argv[1]), verbose=False, body=body)
time.sleep(2.0)  # without the job's disconnect, the actor's lines reach the terminal now
sys.exit(status)
"""


@pytest.mark.usefixtures("ray_local")
def test_worker_output_streamed_after_the_body_still_goes_to_the_log(tmp_path: Path) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    done = _job("-c", LATE_WORKER_JOB, str(tmp_path), env={"RAY_ADDRESS": address})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "", (done.stdout, done.stderr)
    assert "late worker line" in (tmp_path / "logs" / "late.log").read_text()


class _BadInput(MtmhError):
    pass


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (
            _BadInput("items.parquet: not a readable parquet table\nmore"),
            2,
            "error: items.parquet: not a readable parquet table",
        ),
        (
            FileNotFoundError("runs/x/data not found: run prepare first"),
            2,
            "error: runs/x/data not found: run prepare first",
        ),
        (
            ZeroDivisionError("division by zero"),
            1,
            "error: unexpected ZeroDivisionError: division by zero",
        ),
    ],
)
def test_a_failing_job_prints_one_line_and_logs_the_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], error: Exception, status: int, line: str
) -> None:
    def body(out: JobOutput) -> int:
        out.console.print("started")
        raise error

    assert run_job("failing", tmp_path, verbose=False, body=body) == status
    out, err = capfd.readouterr()
    log_file = tmp_path / "logs" / "failing.log"
    assert out == "started\n"
    assert err.splitlines() == [line, f"(details: {log_file})"]
    log = log_file.read_text()
    assert "Traceback (most recent call last)" in log and type(error).__name__ in log


def _job(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _cut_catalog(data: Path) -> str:
    items = data / "items.parquet"
    items.write_bytes(items.read_bytes()[:-20])
    return "items.parquet: not a readable parquet"


def _empty_log(data: Path) -> str:
    (data / "interactions.csv").write_text("user_id,item_id,timestamp,weight\n")
    return "no valid interactions"


@pytest.mark.parametrize("spoil", [_cut_catalog, _empty_log])
def test_a_bad_dataset_stops_prepare_with_one_line(tmp_path: Path, spoil: Any) -> None:
    data = write_tiny_dataset(tmp_path / "shop")
    expected = spoil(data)
    run = tmp_path / "run"
    done = _job("ray_jobs/prepare_data.py", "--dataset", f"parquet:{data}", "--out", str(run))
    assert done.returncode == 2, done.stderr
    first, details = done.stderr.strip().splitlines()
    assert first.startswith("error: ") and expected in first, first
    assert details == f"(details: {run / 'logs' / 'prepare.log'})"
    assert "Traceback" in (run / "logs" / "prepare.log").read_text()


def test_jobs_on_a_missing_run_and_a_bad_config_say_so_in_one_line(tmp_path: Path) -> None:
    done = _job("ray_jobs/train.py", "--run", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"error: no run directory {tmp_path / 'nope'}: run "
        "prepare_data.py first"
    )
    assert not (tmp_path / "nope").exists()  # no log folder made for a run that is not there
    done = _job("ray_jobs/pipeline.py", "--out", str(tmp_path / "r"), "--set", "eval.alpha=500")
    assert done.returncode == 2 and done.stderr.startswith("error: invalid config:")
    assert "eval.alpha" in done.stderr and "Traceback" not in done.stderr


def test_an_update_with_a_bad_override_names_the_key(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    save_config(build_config(), run / "pipeline.yaml")
    done = _job("ray_jobs/update.py", str(run), "--logs", str(tmp_path), "--set", "split.mode=x")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["error: invalid config:", "  split: unknown key"]
    assert not (run / "versions").exists()  # nothing made


def test_the_mtmh_command(tmp_path: Path) -> None:
    mtmh = str(Path(sys.executable).with_name("mtmh"))
    done = subprocess.run([mtmh, "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "serve", "sweep", "report", "examples:"):
        assert command in done.stdout
    done = subprocess.run([mtmh, "run", "--help"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("usage: mtmh run") and "--verbose" in done.stdout
    done = subprocess.run([mtmh, "serve", "--help"], capture_output=True, text=True, check=True)
    assert "--mode {graph,fused}" in done.stdout and "examples:" in done.stdout
    done = subprocess.run([mtmh, "report", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and f"no report in {tmp_path}" in done.stderr
    (tmp_path / "versions" / "1").mkdir(parents=True)  # an update's version, served
    write_version(tmp_path, 1, {"version": 1})
    promote(tmp_path, 1, "test")
    done = subprocess.run([mtmh, "report", str(tmp_path)], capture_output=True, text=True)
    assert f"no report in {tmp_path / 'versions' / '1'}" in done.stderr  # the served one's
    done = subprocess.run([mtmh, "serve", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "not a finished run" in done.stderr
    done = subprocess.run([mtmh, "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown command 'frobnicate'" in done.stderr


def test_a_jobs_steps_are_logged_by_tenths(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from mtmh.progress import steps

    def body(out: JobOutput) -> int:
        with steps("counting items", 20) as advance:
            for _ in range(20):
                advance(1)
        return 0

    assert run_job("counting", tmp_path, verbose=False, body=body) == 0
    assert capfd.readouterr().out == ""  # not a terminal: no bar drawn
    log = (tmp_path / "logs" / "counting.log").read_text()
    lines = [ln for ln in log.splitlines() if "counting items:" in ln]
    assert [ln.split("counting items: ")[1] for ln in lines] == [
        f"{2 * k} of 20" for k in range(1, 11)
    ]


def test_a_step_in_another_thread_leaves_the_stage_line_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pipeline's stages beside the trainings count their steps in a driver thread while
    the train line is live, and go on after it ends: their counts go to the log only."""
    import io
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console

    from mtmh.progress import steps
    from mtmh.stage_board import StageBoard

    counted, line_ended = threading.Event(), threading.Event()

    def beside() -> None:
        with steps("beside work", 4) as advance:
            advance(1)
            counted.set()
            line_ended.wait(10)
            advance(3)  # the train line is gone by now

    caplog.set_level(logging.INFO, logger="mtmh.progress")
    with StageBoard(Console(file=io.StringIO())) as board, ThreadPoolExecutor(1) as thread:
        with board.stage("train", total=2) as advance_train:
            done = thread.submit(beside)
            assert counted.wait(10)
            advance_train(1)
            line = board.progress.tasks[-1]
            assert (line.description, line.total, line.completed) == ("train", 2, 1)
        line_ended.set()
        done.result()
    assert "beside work: 4 of 4" in caplog.text
