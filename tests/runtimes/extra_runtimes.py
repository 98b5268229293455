"""What the openvino and executorch tests share: profiling on this machine with a short protocol, and a
file the runtime rejects."""

from pathlib import Path

import pytest

from edgekit.profile.devices import DeviceProfile
from edgekit.profile.run import profile_artifacts

#: a few timed runs: the tests check what is measured and how it is labelled, not how fast
SHORT = {"warmup_runs": 2, "min_runs": 20, "min_seconds": 0, "rounds": 1, "timeout_seconds": 300}


def profile_here(float_file: Path, int8_file: Path, delegates: dict[str, list[str]]) -> list[dict]:
    """Entries of ``float_file`` and its int8 twin in each runtime of ``delegates`` at one thread."""
    device = DeviceProfile(name="here", kind="local", arch="auto", runtimes=list(delegates), delegates=delegates,
                           threads=[1], protocol=SHORT)
    return profile_artifacts([float_file, int8_file], device, float_twins={str(int8_file): float_file},
                             log=lambda line: None)


def assert_rejected_in_one_line(runtime: str, broken: Path, words: str) -> None:
    """Loading a file of junk is one RuntimeFailure line naming the file."""
    from edgekit.runtimes import RuntimeFailure, get_runtime

    broken.write_bytes(b"not a model")
    with pytest.raises(RuntimeFailure, match=f"{broken}: {words}") as caught:
        get_runtime(runtime).load(broken, threads=1)
    assert "\n" not in str(caught.value)
