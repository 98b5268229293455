"""The ssh target against a real OpenSSH server that the tests start on 127.0.0.1 with throwaway keys."""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.profile.devices import DeviceProfile, machine_arch
from edgekit.targets import make_target
from edgekit.targets.base import TargetError
from edgekit.targets.ssh import SshTarget

from .test_local import TargetContract

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class OpenSshServer:
    """``sshd -D`` on a free port of 127.0.0.1; key login only, for the current user; all files in ``folder``."""

    def __init__(self, folder: Path):
        if not os.access(SSHD, os.X_OK) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
            pytest.skip("OpenSSH server/client not installed: run scripts/setup-ssh.sh")
        self.folder = folder
        self.port = free_port()
        self.client_key = self._keygen("client_key")
        host_key = self._keygen("host_key")
        (folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.touch()
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
        self.log = open(folder / "sshd.log", "w")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_listening()

    def profile(self, **overrides) -> DeviceProfile:
        ssh = {"host": "127.0.0.1", "port": self.port, "user": getpass.getuser(), "identity_file": str(self.client_key),
               "known_hosts": str(self.known_hosts), "python": sys.executable, "connect_timeout_seconds": 5}
        ssh.update(overrides.pop("ssh", {}))
        protocol = {"warmup_runs": 2, "min_runs": 20, "min_seconds": 0, "rounds": 3, "timeout_seconds": 120}
        protocol.update(overrides.pop("protocol", {}))
        return DeviceProfile(name="test-sshd", kind="ssh", arch=machine_arch(), ssh=ssh, protocol=protocol, **overrides)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def _keygen(self, name: str) -> Path:
        path = self.folder / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.flush()
                pytest.fail(f"sshd exited: {(self.folder / 'sshd.log').read_text().strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("sshd did not start listening within 15 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = OpenSshServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


class TestSshTarget(TargetContract):
    @pytest.fixture
    def target(self, sshd):
        target = make_target(sshd.profile())
        yield target
        target.cleanup()

    def workdir_exists(self, target):
        # The "board" is this machine, so its work directory can be checked directly.
        return target.remote_dir is not None and Path(target.remote_dir).is_dir()

    def test_made_through_the_registry(self, target):
        assert isinstance(target, SshTarget) and target.describe()["host"] == "127.0.0.1"

    def test_remote_python_runs_in_the_work_directory(self, target):
        result = target.run([target.python, "-c", "import os; print(os.getcwd())"], timeout=60)
        assert result.returncode == 0 and result.stdout.strip() == target.remote_dir

    def test_a_timed_out_command_is_ended_on_the_board_too(self, target):
        marker = f"edgekit-ssh-test-{os.getpid()}-{time.monotonic_ns()}"
        with pytest.raises(TargetError, match="timed out"):
            target.run(["sh", "-c", f"sleep 30; echo {marker}"], timeout=1)
        time.sleep(0.5)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert marker not in ps


def test_closed_port_fails_fast_with_host_and_ssh_error(sshd):
    target = SshTarget(sshd.profile(ssh={"port": free_port()}))
    started = time.monotonic()
    with pytest.raises(TargetError) as caught:
        target.run(["true"], timeout=30)
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert "\n" not in message and "127.0.0.1" in message and "Connection refused" in message, message
    target.cleanup()  # nothing was made; must not raise


def test_wrong_key_is_a_clear_error(sshd, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(TargetError, match=r"ssh failed: .*Permission denied"):
        SshTarget(sshd.profile(ssh={"identity_file": str(stranger)})).run(["true"], timeout=30)


def test_missing_ssh_client_reads_as_unavailable(sshd, monkeypatch):
    from edgekit.targets.base import TargetUnavailable

    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(TargetUnavailable, match="setup-ssh.sh"):
        make_target(sshd.profile())


def _check(profile, tmp_path, capsys) -> tuple[int, str]:
    """``edgekit devices check`` on ``profile`` written as YAML, through edgekit's own main()."""
    import yaml

    from edgekit.cli import main

    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(profile.model_dump(exclude_none=True, exclude_defaults=False)))
    code = main(["devices", "check", str(path)])
    return code, capsys.readouterr().out.strip()


def test_devices_check_connects_and_runs_the_self_check(sshd, tmp_path, capsys):
    code, out = _check(sshd.profile(), tmp_path, capsys)
    assert (code, out) == (0, "test-sshd (ssh): ready")


def test_devices_check_with_a_wrong_key_is_not_ready_with_the_ssh_reason(sshd, tmp_path, capsys):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    code, out = _check(sshd.profile(ssh={"identity_file": str(stranger)}), tmp_path, capsys)
    assert code == 1 and out.startswith("test-sshd (ssh): not ready: ") and "Permission denied" in out, out


def test_devices_check_names_numpy_missing_on_the_board(sshd, tmp_path, capsys):
    bare = tmp_path / "bare-python"  # isolated, no site-packages: a board's python without numpy
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    code, out = _check(sshd.profile(ssh={"python": str(bare)}), tmp_path, capsys)
    assert code == 1 and "not ready: missing on the device" in out and "numpy (No module named 'numpy')" in out, out


def test_devices_check_with_no_python_on_the_board(sshd, tmp_path, capsys):
    code, out = _check(sshd.profile(ssh={"python": "/nonexistent/python3"}), tmp_path, capsys)
    assert code == 1 and "/nonexistent/python3 could not run the on-device script" in out, out
