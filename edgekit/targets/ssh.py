"""A board over ssh: OpenSSH's ``ssh``/``scp`` clients, non-interactive, every call with a timeout.

The remote side needs a POSIX shell and coreutils (``mktemp``, ``timeout``, ``rm``) besides Python.
ssh joins its arguments into one remote shell line, so every remote argument is ``shlex.quote``d here.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, StrictInt, field_validator

from edgekit.targets.base import Capabilities, CommandResult, Target, TargetError, TargetSettings
from edgekit.targets.local import CPU_RUNTIMES, last_line, run_process

#: ssh's own exit status for connection and authentication failures
SSH_FAILED = 255
#: coreutils ``timeout``'s exit status when it had to stop the command
REMOTE_TIMED_OUT = 124
#: seconds for the small bookkeeping commands (mktemp, rm)
BOOKKEEPING_TIMEOUT = 30.0
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: a DNS name (letters, digits, '-', '_' and dots; no leading '-'), as ssh and a shell both read it verbatim
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_CONNECT_TIMEOUT = 300


class SshSettings(TargetSettings):
    host: str = Field(..., description="Host name, IPv4 or IPv6 address of the board.")
    user: Optional[str] = Field(None, description="Login user (default: ssh's own default).")
    port: StrictInt = Field(22, ge=1, le=65535, description="ssh port.")
    identity_file: Optional[str] = Field(None, description="Private key file (`ssh -i`); `~` is expanded.")
    known_hosts: Optional[str] = Field(None, description="known_hosts file to use instead of `~/.ssh/known_hosts`.")
    host_key_checking: Literal["accept-new", "yes"] = Field("accept-new", description="`accept-new`: trust a host key on first use; `yes`: the key must already be in known_hosts.")
    connect_timeout_seconds: StrictInt = Field(10, ge=1, le=MAX_CONNECT_TIMEOUT, description="Give up connecting after this many seconds.")
    python: str = Field("python3", min_length=1, description="Python interpreter on the board (with numpy and onnxruntime / ai-edge-litert installed).")
    workdir: str = Field("/tmp", min_length=1, description="Directory on the board in which a temporary work directory is made.")

    @field_validator("host")
    @classmethod
    def _host_name_or_address(cls, host: str) -> str:
        if not (_is_ip_address(host) or (len(host) <= 253 and _HOST_NAME.fullmatch(host))):
            raise ValueError("must be a host name (letters, digits, '-', '.') or an IPv4/IPv6 address")
        return host

    @field_validator("user")
    @classmethod
    def _plain_user(cls, user: Optional[str]) -> Optional[str]:
        if user is not None and not _USER_NAME.fullmatch(user):
            raise ValueError("must be a plain user name (letters, digits, '_', '.', '-'; not starting with '-')")
        return user


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class SshTarget(Target):
    kind = "ssh"
    settings_model = SshSettings
    capabilities = Capabilities(runtimes=CPU_RUNTIMES, max_threads=256)

    def __init__(self, profile):
        self.profile = profile
        self.settings = profile.ssh
        self.name = profile.name
        self.python = self.settings.python
        self.remote_dir: str | None = None

    # -- Target interface -------------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        missing = [tool for tool in ("ssh", "scp") if shutil.which(tool) is None]
        if missing:
            return False, f"the OpenSSH client ({', '.join(missing)}) is not installed: run scripts/setup-ssh.sh"
        return True, ""

    def put(self, local: Path, remote_name: str) -> str:
        remote_path = self._remote_path(remote_name)
        self._scp([str(local), f"{self._login()}:{remote_path}"], what=f"copying {Path(local).name}")
        return remote_path

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        workdir = self._workdir()
        # The remote `timeout` ends the command on the board too (killing ssh alone would leave it running).
        line = f"cd {shlex.quote(workdir)} && exec timeout -k 5 {timeout:.1f} {shlex.join(argv)}"
        result = self._ssh(line, timeout=timeout + self._slack(), what=Path(argv[0]).name)
        if result.returncode == REMOTE_TIMED_OUT:
            raise TargetError(f"{self.name}: {Path(argv[0]).name} timed out after {timeout:g} s on {self.settings.host}")
        return result

    def get(self, remote_name: str, local: Path) -> Path:
        self._scp([f"{self._login()}:{self._remote_path(remote_name)}", str(local)], what=f"fetching {remote_name}")
        return Path(local)

    def cleanup(self) -> None:
        """Remove the remote work directory; best effort, so that it never hides the error that led here."""
        if self.remote_dir is None:
            return
        remote_dir, self.remote_dir = self.remote_dir, None
        try:
            self._ssh(f"rm -rf -- {shlex.quote(remote_dir)}", timeout=BOOKKEEPING_TIMEOUT, what="rm")
        except TargetError:
            pass

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "host": self.settings.host, "port": self.settings.port,
                "user": self.settings.user}

    # -- helpers ---------------------------------------------------------------------------------------
    def _workdir(self) -> str:
        if self.remote_dir is None:
            template = f"{self.settings.workdir.rstrip('/')}/edgekit.XXXXXXXX"
            result = self._ssh(f"mktemp -d {shlex.quote(template)}", timeout=BOOKKEEPING_TIMEOUT, what="mktemp")
            made = result.stdout.strip()
            if result.returncode != 0 or not made.startswith("/"):
                raise TargetError(f"{self.name}: cannot make a work directory in {self.settings.workdir} on "
                                  f"{self.settings.host}: {last_line(result.stderr) or made}")
            self.remote_dir = made
        return self.remote_dir

    def _remote_path(self, remote_name: str) -> str:
        if not _PLAIN_NAME.fullmatch(remote_name):
            raise TargetError(f"{self.name}: '{remote_name}' is not a plain file name")
        return f"{self._workdir()}/{remote_name}"

    def _ssh(self, remote_line: str, *, timeout: float, what: str) -> CommandResult:
        argv = ["ssh", *self._options(port_flag="-p"), "--", self._login(), remote_line]
        return self._checked(argv, timeout=timeout, what=what)

    def _scp(self, paths: list[str], *, what: str) -> None:
        argv = ["scp", "-q", *self._options(port_flag="-P"), "--", *paths]
        result = self._checked(argv, timeout=self.profile.protocol.timeout_seconds, what=what)
        if result.returncode != 0:
            raise TargetError(f"{self.name}: {what} over scp failed: {last_line(result.stderr)}")

    def _checked(self, argv: list[str], *, timeout: float, what: str) -> CommandResult:
        where = f"{self.name} ({self._login()}:{self.settings.port})"
        result = run_process(argv, timeout=timeout, device=where, what=what)
        if result.returncode == SSH_FAILED:
            raise TargetError(f"{where}: ssh failed: {last_line(result.stderr) or 'no message'}")
        return result

    def _options(self, *, port_flag: str) -> list[str]:
        settings = self.settings
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={settings.connect_timeout_seconds}",
                   "-o", f"StrictHostKeyChecking={settings.host_key_checking}",
                   "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3",
                   "-o", "LogLevel=ERROR", port_flag, str(settings.port)]
        if settings.known_hosts:
            options += ["-o", f"UserKnownHostsFile={Path(settings.known_hosts).expanduser()}"]
        if settings.identity_file:
            options += ["-o", "IdentitiesOnly=yes", "-i", str(Path(settings.identity_file).expanduser())]
        return options

    def _login(self) -> str:
        return f"{self.settings.user}@{self.settings.host}" if self.settings.user else self.settings.host

    def _slack(self) -> float:
        """Time on top of a command's timeout for connecting and for the remote `timeout` to act."""
        return self.settings.connect_timeout_seconds + 10.0
