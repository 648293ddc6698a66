"""The ``deadline`` fixture (tests/conftest.py) fails a hanging test instead of blocking the suite: checked on tests
that hang, each run by its own pytest process."""

import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run_pytest(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, float]:
    (tmp_path / "test_hangs.py").write_text("import signal\n\nimport pytest\n\n\n" + body)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    deadline(seconds): the test's time limit\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "-c",
               str(tmp_path / "pytest.ini"), str(tmp_path / "test_hangs.py")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"})
    return done, time.perf_counter() - start


def test_a_hang_in_python_code_fails_at_the_limit(tmp_path):
    done, seconds = _run_pytest(tmp_path, "@pytest.mark.deadline(1)\ndef test_loops(deadline):\n"
                                          "    while True:\n        pass\n")
    assert done.returncode == 1, done.stdout + done.stderr  # pytest's "tests failed"
    assert "TimeoutError: still running after 1 s: a hang" in done.stdout and "1 failed" in done.stdout
    assert seconds < 60


def test_a_hang_where_no_signal_handler_runs_ends_the_process(tmp_path):
    """SIGALRM blocked stands for a hang inside C code: the faulthandler backstop ends the run ``grace`` s later."""
    done, seconds = _run_pytest(tmp_path, "@pytest.mark.deadline(1, grace=2)\ndef test_loops(deadline):\n"
                                          "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
                                          "    while True:\n        pass\n")
    assert done.returncode != 0 and "Timeout (0:00:03)!" in done.stderr, done.stdout + done.stderr
    assert "test_hangs.py" in done.stderr and "passed" not in done.stdout  # the hanging frame, and no result
    assert seconds < 60
