"""A build killed at a random point leaves a report.json that the gate refuses (exit 1), saying why."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, tiny_recipe_data


def _edgekit(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, **kwargs)


@pytest.mark.slow
def test_gate_fails_on_the_report_of_a_killed_build(tmp_path):
    recipe = tmp_path / "killed.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_data(
        quantize={"method": "qat", "epochs": 0.5, "calibration_batches": 2},
        profile={"devices": [str(REPO / "devices/host-smoke.yaml")], "threads": [1]})))
    out = tmp_path / "out"
    delay = random.Random().uniform(0.0, 15.0)
    build = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "build", str(recipe), "--out", str(out)],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "EDGEKIT_NO_PROGRESS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "report.json").exists() and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        assert build.poll() is None, f"the build ended before the kill at {delay:.1f} s: make the recipe longer"
        build.send_signal(signal.SIGKILL)
    finally:
        build.wait(timeout=30)
    gate = _edgekit("gate", str(out / "report.json"))
    assert gate.returncode == 1, (delay, gate.stdout, gate.stderr)
    assert "incomplete" in (gate.stdout + gate.stderr), (delay, gate.stdout, gate.stderr)
    assert "Traceback" not in gate.stderr
