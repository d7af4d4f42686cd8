"""``wss`` stopped early still says what it measured: Ctrl-C during ``--json`` prints
the complete document of the samples taken and exits 130; and text output, which
prints each sample as it comes, keeps none of them, so any --count runs in the
memory of one sample."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import signal
import subprocess
import sys
import time


from conftest import requires_root, smaps_of

pytestmark = requires_root


def wait_until(predicate, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_ctrl_c_during_json_prints_the_samples_taken_and_exits_130(specimen):
    a = specimen.run("a = mmap(16); write(a, 16); result = a")
    p = subprocess.Popen([sys.executable, "-m", "pagewalk", "wss", str(specimen.pid), "--method", "referenced",
                          "--interval", "0.02", "--count", "1000000", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Each sample starts by clearing the target's referenced bits (clear_refs), and the
        # specimen touches nothing between requests: pages seen unreferenced stay so until
        # the test touches them.  Seen cleared, touched, seen cleared again: a second
        # sample has started, so the first is complete.
        referenced = lambda: smaps_of(specimen.pid, a)["Referenced"]  # noqa: E731
        wait_until(lambda: referenced() == 0)
        specimen.run(f"write({a}, 16)")
        wait_until(lambda: referenced() == 0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["method"] == "referenced" and len(doc["samples"]) >= 1
    assert doc["cost"]["pages_scanned"] > 0
    times = [s["time"] for s in doc["samples"]]
    assert times == sorted(times) and times[0] >= 0.02


class SampleCounter(io.StringIO):
    """stdout that counts, as each sample line is written, the samples alive in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.alive: list[int] = []

    def write(self, text: str) -> int:
        if text.startswith("t="):
            from pagewalk.analysis.wss import Sample

            self.alive.append(sum(1 for o in gc.get_objects() if type(o) is Sample))
        return super().write(text)


def test_text_output_keeps_no_samples(specimen):
    from pagewalk.cli import main

    out = SampleCounter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["wss", str(specimen.pid), "--method", "referenced", "--interval", "0.0001",
                     "--count", "30"]) == 0
    # the one being shown, and the one before it at most
    assert len(out.alive) == 30 and max(out.alive) <= 2, out.alive
