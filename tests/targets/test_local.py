"""The local target, and the contract every target meets (``TargetContract``, subclassed per target)."""

import time
from pathlib import Path

import pytest

from edgekit.targets import make_target
from edgekit.targets.base import CommandResult, Target, TargetError
from edgekit.targets.local import LocalTarget, last_line


class TargetContract:
    """Put, run, get, clean up, time out: what the profiling orchestration relies on. Subclasses give
    a ``target`` fixture (a fresh Target) and ``workdir_exists(target)``."""

    def workdir_exists(self, target: Target) -> bool:
        raise NotImplementedError

    def test_put_run_get_round_trip(self, target, tmp_path):
        source = tmp_path / "in.txt"
        source.write_text("hello target\n")
        remote = target.put(source, "in.txt")
        assert remote.endswith("/in.txt")
        result = target.run(["cp", "in.txt", "out.txt"], timeout=30)  # relative: runs in the work directory
        assert isinstance(result, CommandResult) and result.returncode == 0 and result.seconds >= 0
        fetched = target.get("out.txt", tmp_path / "back.txt")
        assert fetched.read_text() == "hello target\n"

    def test_arguments_reach_the_command_verbatim(self, target):
        argv = ["printf", "%s|", "a b", "$HOME", "'q'", "x;echo no", "*"]
        assert target.run(argv, timeout=30).stdout == "a b|$HOME|'q'|x;echo no|*|"

    def test_non_zero_exit_is_a_result_not_an_error(self, target):
        result = target.run(["sh", "-c", "echo partial; echo 'it broke' >&2; exit 3"], timeout=30)
        assert (result.returncode, result.stdout, last_line(result.stderr)) == (3, "partial\n", "it broke")

    def test_timeout_raises_target_error_naming_the_device(self, target):
        started = time.monotonic()
        with pytest.raises(TargetError, match=r"timed out after 1(\.0)? s") as caught:
            target.run(["sleep", "30"], timeout=1)
        assert time.monotonic() - started < 10
        assert target.name in str(caught.value)

    def test_timeout_also_ends_children_holding_the_output(self, target):
        started = time.monotonic()
        with pytest.raises(TargetError, match="timed out"):
            target.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
        assert time.monotonic() - started < 10

    def test_get_of_a_missing_file_is_a_target_error(self, target, tmp_path):
        target.put(Path(__file__), "here.py")
        with pytest.raises(TargetError):
            target.get("missing.bin", tmp_path / "x")

    def test_only_plain_file_names(self, target):
        with pytest.raises(TargetError, match="plain file name"):
            target.put(Path(__file__), "../escape.py")

    def test_cleanup_removes_the_work_directory(self, target):
        target.put(Path(__file__), "x.py")
        assert self.workdir_exists(target)
        with target:
            pass
        assert not self.workdir_exists(target)
        target.cleanup()  # twice is fine


class TestLocalTarget(TargetContract):
    @pytest.fixture
    def target(self):
        target = LocalTarget()
        yield target
        target.cleanup()

    def workdir_exists(self, target):
        return target._workdir is not None and target._workdir.exists()

    def test_no_work_directory_until_first_use(self):
        target = LocalTarget()
        assert target._workdir is None and target.available() == (True, "")
        target.cleanup()
        assert target._workdir is None

    def test_missing_program_is_a_target_error(self, target):
        with pytest.raises(TargetError, match=r"host: cannot run no-such-tool"):
            target.run(["no-such-tool"], timeout=5)

    def test_python_is_the_interpreter_running_edgekit(self, target):
        result = target.run([target.python, "-c", "import edgekit; print('ok')"], timeout=60)
        assert result.stdout.strip() == "ok"

    def test_made_from_a_device_profile_through_the_registry(self):
        from edgekit.profile.devices import DeviceProfile

        target = make_target(DeviceProfile(name="bench-box", kind="local", arch="auto"))
        with target:
            assert isinstance(target, LocalTarget) and target.name == "bench-box"
            assert target.describe()["kind"] == "local" and not target.emulated


def test_registry_names_the_missing_kind_module(monkeypatch):
    from edgekit import targets
    from edgekit.targets.base import TargetUnavailable

    monkeypatch.setitem(targets._TARGETS, "adb", "edgekit.targets.not_there:Nope")
    with pytest.raises(TargetUnavailable, match=r"target kind 'adb' is not available here: module edgekit\.targets\.not_there"):
        targets.target_class("adb")
