"""The Ray executor: every point of a sweep is one Ray task on an existing cluster (``--ray-address`` or
``RAY_ADDRESS``). The task runs the same ``python -m edgekit.cli build`` child process as the local executor,
with the node's own Python, in the driver's working directory, writing into the sweep directory: that
directory (and the recipe, the device profiles and the dataset) must be at the same path on every node,
a shared path. A task whose node does not see the sweep directory fails its point with that reason.
Each task asks Ray for the CPUs its recipe's threads need (``task_cpus``).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from edgekit.errors import UserInputError
from edgekit.sweep.grid import Point
from edgekit.sweep.run import Outcome, build_args, run_build

RAY_EXTRA = "pip install edgekit[ray]"
MARKER_FILE = ".shared-marker"


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserInputError(f"--executor ray: Ray is not installed here; {RAY_EXTRA}") from None
    return ray


def cluster_address(flag_value: str | None) -> str:
    address = flag_value or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserInputError("--executor ray: no cluster named; give --ray-address HOST:PORT (or auto, for the "
                             "cluster started on this machine) or set RAY_ADDRESS")
    return address


def task_cpus(point: Point) -> int:
    """CPUs one point's build uses at once: the most of train.threads times its training processes
    (``train.distributed.nproc_per_node``; unset threads count as 1: the build gets
    OMP_NUM_THREADS set to the task's CPUs, which torch follows), evaluate.threads and the thread counts
    profiled on a device that runs on the node itself (local, emulated, simulated; not a phone or an ssh host)."""
    from edgekit.profile.devices import load_device_profile
    from edgekit.targets.local import LocalTarget

    recipe = point.recipe
    processes = recipe.train.distributed.nproc_per_node  # torchrun's training processes, each with its threads
    counts = [(recipe.train.threads or 1) * processes, recipe.evaluate.threads]
    for path in recipe.profile.devices:
        profile = load_device_profile(path)
        if issubclass(profile.target_class, LocalTarget):  # it runs on the node, in the task's CPUs
            counts += recipe.profile.threads or list(profile.threads)
    return max(counts)


class RayRunner:
    """A ``PointRunner``: submits each point as a Ray task and waits for it (called from the sweep's threads)."""

    def __init__(self, ray, out_dir: Path, cpus: dict[str, int]):
        self.ray, self.cpus, self.cwd = ray, cpus, Path.cwd()
        self.out_dir = self._absolute(out_dir)
        self.token = secrets.token_hex(16)
        self.marker_written = threading.Lock()
        self.remote = ray.remote(max_retries=0)(build_on_node)

    def __call__(self, recipe_path: Path, point: Point, point_dir: Path, until: str | None, log_path: Path) -> Outcome:
        with self.marker_written:  # written under the sweep's lock, so a concurrent sweep cannot overwrite it
            (self.out_dir / MARKER_FILE).write_text(self.token)
        args = build_args(self._absolute(recipe_path), point.set_args, self._absolute(point_dir), until)
        started = time.monotonic()
        try:
            task = self.remote.options(num_cpus=self.cpus[point.id], name=f"edgekit-sweep:{point.id}")
            return self.ray.get(task.remote(args, str(self._absolute(log_path)), str(self.cwd),
                                            str(self.out_dir / MARKER_FILE), self.token, self.cpus[point.id]))
        except Exception as exc:  # a lost node or worker: the point fails, the sweep goes on
            first_line = (str(exc).strip().splitlines() or [""])[0]
            return Outcome(False, time.monotonic() - started, f"the Ray task failed: {type(exc).__name__}: {first_line}")

    def _absolute(self, path: Path) -> Path:
        return path if path.is_absolute() else self.cwd / path


def build_on_node(args: list[str], log_path: str, cwd: str, marker: str, token: str, cpus: int) -> Outcome:
    """The Ray task: the point's build with this node's Python and ``cpus`` OpenMP threads, after checking
    that the node sees the sweep directory."""
    try:
        shared = Path(marker).read_text() == token
    except OSError:
        shared = False
    if not shared:
        return Outcome(False, 0.0, f"node {socket.gethostname()} does not see the sweep directory "
                                   f"{Path(marker).parent} (it must be on a path shared by every node)")
    if not Path(cwd).is_dir():
        return Outcome(False, 0.0, f"node {socket.gethostname()} has no directory {cwd} (the driver's working "
                                   f"directory, where the recipe's relative paths point)")
    return run_build(args, Path(log_path), Path(cwd), env={"OMP_NUM_THREADS": str(cpus)})


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check of HOST:PORT before ``ray.init``, which retries an unreachable address for minutes
    (and swaps a loopback address for the machine's own)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserInputError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc})",
                             hint="start one with `ray start --head`, or give its HOST:PORT") from None


def connect(ray, address: str) -> dict:
    """Connect this driver to the cluster; return its resources (exit 2 when no cluster answers)."""
    check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserInputError(f"--ray-address {address}: cannot connect to a Ray cluster there ({first_line})") from None
    return ray.cluster_resources()


def largest_node_cpus(ray) -> int:
    return int(max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0))


def ray_runner(points: list[Point], address_flag: str | None, jobs: int | None, out_dir: Path,
               log) -> tuple[RayRunner, int]:
    """Connect to the cluster and check that every point fits on one of its nodes, before any point runs;
    return the runner and how many points to keep in flight (``--jobs``, else what the cluster's CPUs fit)."""
    ray = import_ray()
    address = cluster_address(address_flag)
    cpus = {point.id: task_cpus(point) for point in points}
    resources = connect(ray, address)
    largest = largest_node_cpus(ray)
    too_big = [point_id for point_id, count in cpus.items() if count > largest]
    if too_big:
        ray.shutdown()
        raise UserInputError(f"--executor ray: point {too_big[0]} needs {cpus[too_big[0]]} CPUs (its recipe's "
                             f"threads), but the largest node of the cluster at {address} has {largest}")
    total = int(resources.get("CPU", 0))
    in_flight = jobs or max(1, min(len(points), total // max(cpus.values())))
    asked = sorted(set(cpus.values()))
    log(f"sweep: Ray cluster at {address}: {total} CPUs; each point asks for "
        f"{'/'.join(map(str, asked))} CPU{'s' if asked != [1] else ''}, {in_flight} at once")
    return RayRunner(ray, out_dir, cpus), in_flight
