"""The build directory lock, with real processes: a second build is refused naming the holder; a lock
left by a process that is gone is taken over with a message."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import tiny_recipe_data
from edgekit.cli import main
from edgekit.errors import UserInputError
from edgekit.lock import build_lock, lock_path

# Takes the lock on argv[1], says so on stdout, then holds it until stdin closes (or it is killed).
HOLDER = """
import sys
from edgekit.lock import build_lock
with build_lock(sys.argv[1], command="holder " + sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""

# Tries the lock on argv[1]; holds it argv[2] seconds if it got it. Prints "got" or the error.
CONTENDER = """
import sys, time
from edgekit.errors import UserInputError
from edgekit.lock import build_lock
try:
    with build_lock(sys.argv[1], log=lambda line: None):
        print("got", flush=True)
        time.sleep(float(sys.argv[2]))
except UserInputError as exc:
    print("refused:", exc, flush=True)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock on a build directory; yields the process."""
    processes = []

    def start(out_dir):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out_dir)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_second_process_is_refused_naming_the_holder(tmp_path, holder):
    process = holder(tmp_path / "build")
    with pytest.raises(UserInputError) as refused:
        with build_lock(tmp_path / "build"):
            pytest.fail("took a lock another process holds")
    message = str(refused.value)
    assert f"is in use by pid {process.pid}" in message
    assert "since 20" in message and "holder" in message
    assert refused.value.exit_code == 2


def test_the_lock_is_free_again_once_the_holder_ends(tmp_path, holder):
    process = holder(tmp_path / "build")
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    messages = []
    with build_lock(tmp_path / "build", log=messages.append):
        holder_info = json.loads(lock_path(tmp_path / "build").read_text())
    assert messages == []  # released cleanly: nothing to take over
    assert holder_info["pid"] == os.getpid()
    assert lock_path(tmp_path / "build").read_text() == ""


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_message(tmp_path, holder):
    process = holder(tmp_path / "build")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert json.loads(lock_path(tmp_path / "build").read_text())["pid"] == process.pid
    messages = []
    with build_lock(tmp_path / "build", log=messages.append):
        assert json.loads(lock_path(tmp_path / "build").read_text())["pid"] == os.getpid()
    assert len(messages) == 1
    assert f"taking over the lock on {tmp_path / 'build'} left by pid {process.pid}" in messages[0]
    assert "that process is gone" in messages[0]


def test_of_processes_racing_for_one_directory_exactly_one_wins(tmp_path):
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(tmp_path / "build"), "3"],
                                   stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [process.communicate(timeout=60)[0].strip() for process in contenders]
    assert sorted(outcome.split()[0] for outcome in outcomes) == ["got", "refused:", "refused:", "refused:"]


def test_different_directories_do_not_block_each_other(tmp_path, holder):
    holder(tmp_path / "one")
    with build_lock(tmp_path / "two"):
        pass


def test_the_same_process_can_take_its_own_lock_again(tmp_path):
    with build_lock(tmp_path / "build"):
        with build_lock(tmp_path / "build"):
            pass
        assert json.loads(lock_path(tmp_path / "build").read_text())["pid"] == os.getpid()
    assert lock_path(tmp_path / "build").read_text() == ""


def test_a_garbled_lock_file_is_taken_over(tmp_path):
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_bytes(b"\xff\x00 not json")
    messages = []
    with build_lock(tmp_path, log=messages.append):
        pass
    assert len(messages) == 1 and "its lock file does not say which" in messages[0]


def test_edgekit_build_into_a_held_directory_exits_2_before_any_work(tmp_path, holder, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_data()))
    out_dir = tmp_path / "build"
    process = holder(out_dir)
    started = time.monotonic()
    assert main(["build", str(recipe), "--out", str(out_dir)]) == 2
    assert time.monotonic() - started < 10
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"edgekit: error: build directory {out_dir} is in use by pid {process.pid}")
    assert "\n" not in error
    assert sorted(path.name for path in out_dir.iterdir()) == [".edgekit"]  # nothing was built
