"""Data-parallel float training and QAT under torchrun, with DistributedDataParallel.

``edgekit build`` is one process, the driver, which runs every stage. When a recipe asks for more than one
training process (``train.distributed``), the train stage and the QAT part of the quantize stage hand
their training loop to torchrun (``torch.distributed.run``, PyTorch's own launcher and elastic agent):

* the driver writes the job (the recipe, the build directory, the stage's cache key) to
  ``DIR/.edgekit/distributed/job.json`` and starts ``python -m edgekit.train.distributed launch ...``,
  which is torchrun's own ``run()`` with its failure table replaced by a file the driver reads;
* torchrun starts ``python -m edgekit.train.distributed worker JOB ...`` once per process; each joins the
  process group (gloo on CPUs, NCCL on CUDA GPUs), receives the job from rank 0 and runs the stage's
  training function, which wraps the model in DistributedDataParallel (``wrap``) and gives each rank its
  share of the global batch (``rank_indices``, a DistributedSampler);
* rank 0 alone writes checkpoints (the same files, atomically), the trained model and ``result.json``,
  and shows the only progress bar;
* a failing rank writes its error to ``errors/rank-R.json`` and exits: torchrun stops the other ranks at
  once (``--max-restarts 0``) and the driver raises one line naming the first rank that failed.

On other nodes (``--node-rank`` above 0) ``follow`` launches torchrun for each job node 0 starts, until
node 0 sends the ``finished`` job. See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from edgekit.artifacts import write_json
from edgekit.errors import EdgekitError, UserInputError

JOB_KINDS = ("train", "qat", "finished")
STAGE_OF_JOB = {"train": "train", "qat": "quantize (QAT)"}
#: how long a node waits for the others at a rendezvous (a node that never comes is an error, not a hang)
RENDEZVOUS_TIMEOUT_S = 600
#: a follower waits this long before joining node 0's next job, so that it cannot reach the rendezvous
#: store of the job that just ended (torchrun's agents leave together, then node 0's store closes)
NEXT_JOB_PAUSE_S = 3.0
#: set to "RANK:STEP" to make that rank raise after that training step: checks that a cluster stops promptly
FAULT_INJECTION_ENV = "EDGEKIT_FAIL_RANK"


# --- rank helpers: valid in a worker and in a plain single process (rank 0 of 1) ---------------------

def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


def is_main_process() -> bool:
    return rank() == 0




def processes(train_config) -> int:
    """Training processes a recipe asks for, over all nodes."""
    return train_config.distributed.nproc_per_node * train_config.distributed.nnodes


def per_process_batch(global_batch: int, processes_in_all: int) -> int:
    """``train.batch_size`` is the global batch: each process trains on an equal share of it."""
    if global_batch % processes_in_all:
        raise UserInputError(f"train.batch_size: the global batch {global_batch} does not split evenly between "
                             f"{processes_in_all} processes")
    return global_batch // processes_in_all


def rank_indices(dataset_size: int, shuffle_seed: int) -> torch.Tensor:
    return _rank_indices(dataset_size, shuffle_seed, rank(), world_size())


@lru_cache(maxsize=2)  # asked once per step, the same for a whole epoch
def _rank_indices(dataset_size: int, shuffle_seed: int, this_rank: int, processes_in_all: int) -> torch.Tensor:
    """This rank's share of one epoch's shuffle: the DistributedSampler of ``shuffle_seed``.

    With one process this is ``torch.randperm`` under that seed, the order single-process training has
    always used; with W processes rank r gets every W-th index from r, so batch i of every rank together
    holds exactly the images of the single-process batch i."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(dataset_size), num_replicas=processes_in_all, rank=this_rank, shuffle=True,
                                 seed=shuffle_seed, drop_last=True)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def process_device(device: torch.device) -> torch.device:
    """The CUDA device of this process (one GPU per local rank); a CPU stays the CPU."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


def wrap(model: nn.Module) -> nn.Module:
    """``model`` under DistributedDataParallel when several processes train (rank 0's weights are broadcast
    at construction, gradients are averaged over the ranks), else ``model`` itself."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(values: list[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (the values themselves with one process)."""
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)  # a CPU tensor: gloo carries it
    dist.all_reduce(tensor)
    return tensor.tolist()


def check_in_sync(model: nn.Module) -> None:
    """After training every rank must hold rank 0's weights: a difference means the gradients were not
    averaged over the ranks (a model changed under DistributedDataParallel's feet)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        fingerprint = torch.stack([torch.stack([param.double().sum(), param.double().square().sum()])
                                   for param in model.parameters()]).flatten().cpu()
    gathered = [torch.empty_like(fingerprint) for _ in range(world_size())]
    dist.all_gather(gathered, fingerprint)
    for other_rank, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            raise EdgekitError(f"after training, rank {other_rank}'s weights differ from rank 0's: the gradients "
                               "were not averaged over the ranks")


def summary(per_process_batch_size: int, device: torch.device) -> dict:
    """What report.json's ``training`` and ``qat`` sections record about the processes: how many, the
    backend that averaged the gradients ("none" in one process), each one's share of the batch."""
    if world_size() == 1:
        return {"world_size": 1, "backend": "none", "per_process_batch_size": per_process_batch_size, "nodes": 1}
    return {"world_size": world_size(), "backend": "nccl" if device.type == "cuda" else "gloo",
            "per_process_batch_size": per_process_batch_size, "nodes": int(os.environ.get("GROUP_WORLD_SIZE", "1"))}


def fault_injection(step_hook=None):
    """The training step hook of this rank, raising after the step ``EDGEKIT_FAIL_RANK=RANK:STEP`` names."""
    target = os.environ.get(FAULT_INJECTION_ENV)
    if not target:
        return step_hook
    failing_rank, _, failing_step = target.partition(":")

    def hook(step: int) -> None:
        if step_hook is not None:
            step_hook(step)
        if str(rank()) == failing_rank.strip() and str(step) == failing_step.strip():
            raise RuntimeError(f"failure injected by {FAULT_INJECTION_ENV}={target} after step {step}")

    return hook


# --- the driver side ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendezvous:
    """Where this node meets the others: never part of a result, so never part of the recipe."""

    node_rank: int = 0
    endpoint: str | None = None  # HOST:PORT of node 0; default on one node: 127.0.0.1 and a free port


def check_rendezvous(train_config, rendezvous: Rendezvous) -> None:
    nnodes = train_config.distributed.nnodes
    if rendezvous.node_rank >= nnodes:
        raise UserInputError(f"--node-rank {rendezvous.node_rank}: must be below --nnodes ({nnodes})")
    if nnodes > 1 and not rendezvous.endpoint:
        raise UserInputError(f"--nnodes {nnodes}: every node needs --rdzv-endpoint HOST:PORT, the address of "
                             "node 0 (the node with --node-rank 0)")
    if rendezvous.endpoint is not None:
        host, _, port = rendezvous.endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserInputError(f"--rdzv-endpoint {rendezvous.endpoint!r}: expected HOST:PORT, e.g. 10.0.0.1:29400")


def torch_backend(train_config) -> str:
    """The process group's backends: NCCL for CUDA tensors when training uses CUDA GPUs (``train.device``),
    gloo for CPU tensors always (the job's broadcast, and QAT, which trains on CPUs as in one process)."""
    from edgekit.train.loop import pick_device

    return "cpu:gloo,cuda:nccl" if pick_device(train_config.device).type == "cuda" else "gloo"


def check_devices(train_config) -> None:
    if torch_backend(train_config) == "nccl" and train_config.distributed.nproc_per_node > torch.cuda.device_count():
        raise UserInputError(f"train.distributed.nproc_per_node {train_config.distributed.nproc_per_node}: this node "
                             f"has {torch.cuda.device_count()} CUDA device(s), one per process is needed")


def run_job(kind: str, context, options: dict | None = None) -> dict:
    """Run job ``kind`` ("train" or "qat", with the keyword ``options`` of its stage function) of the build
    ``context`` under torchrun and return rank 0's result; a failed rank raises one line naming it (its
    traceback is in ``DIR/.edgekit/distributed``)."""
    recipe, rendezvous = context.recipe, context.rendezvous or Rendezvous()
    check_rendezvous(recipe.train, rendezvous)
    check_devices(recipe.train)
    folder = scratch_folder(context.out_dir)
    job_file = folder / "job.json"
    write_json(job_file, {"kind": kind, "recipe": recipe.model_dump(mode="json"), "stage_key": context.stage_key,
                          "out_dir": str(Path(context.out_dir).resolve()), "artifacts": context.artifacts,
                          "options": options or {}})
    _launch(recipe.train, rendezvous, job_file, node_file=folder / "node-job.txt")
    return json.loads((folder / "result.json").read_text())


def release_followers(recipe, out_dir: Path, rendezvous: Rendezvous) -> None:
    """Node 0, at the end of a build over several nodes: send the other nodes the ``finished`` job."""
    if recipe.train.distributed.nnodes > 1 and rendezvous.node_rank == 0:
        folder = scratch_folder(out_dir)
        job_file = folder / "job.json"
        write_json(job_file, {"kind": "finished"})
        _launch(recipe.train, rendezvous, job_file, node_file=folder / "node-job.txt")


def follow(recipe, out_dir: Path, rendezvous: Rendezvous, log=print) -> int:
    """A node other than node 0: take part in every training job node 0 starts, until it sends
    ``finished``; returns the number of jobs taken part in."""
    import tempfile

    check_rendezvous(recipe.train, rendezvous)
    check_devices(recipe.train)
    job_file = scratch_folder(out_dir, clear=False) / "job.json"  # read by rank 0 on node 0 only
    jobs = 0
    with tempfile.TemporaryDirectory(prefix="edgekit-node-") as local:
        node_file = Path(local) / "node-job.txt"
        while True:
            log(f"[node {rendezvous.node_rank}] waiting for node 0 at {rendezvous.endpoint}")
            _launch(recipe.train, rendezvous, job_file, node_file=node_file)
            kind = node_file.read_text().strip() if node_file.exists() else ""
            if kind == "finished":
                return jobs
            jobs += 1
            log(f"[node {rendezvous.node_rank}] {STAGE_OF_JOB.get(kind, kind)} done")
            time.sleep(NEXT_JOB_PAUSE_S)


def scratch_folder(out_dir: Path, clear: bool = True) -> Path:
    folder = Path(out_dir) / ".edgekit" / "distributed"
    if clear:
        for stale in [*folder.glob("errors/*"), folder / "result.json", folder / "failures.json"]:
            stale.unlink(missing_ok=True)
    (folder / "errors").mkdir(parents=True, exist_ok=True)
    return folder


def torchrun_arguments(train_config, rendezvous: Rendezvous, job_file: Path, node_file: Path) -> list[str]:
    section = train_config.distributed
    endpoint = rendezvous.endpoint or f"127.0.0.1:{free_port()}"
    return ["--nnodes", str(section.nnodes), "--nproc-per-node", str(section.nproc_per_node),
            "--node-rank", str(rendezvous.node_rank), "--rdzv-backend", "static", "--rdzv-endpoint", endpoint,
            "--rdzv-conf", f"timeout={RENDEZVOUS_TIMEOUT_S}", "--max-restarts", "0", "--monitor-interval", "0.1",
            "--module", "edgekit.train.distributed",
            "worker", str(job_file), torch_backend(train_config), str(node_file)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def threads_per_process(train_config) -> int:
    return train_config.threads or max(1, (os.cpu_count() or 1) // train_config.distributed.nproc_per_node)


def _launch(train_config, rendezvous: Rendezvous, job_file: Path, node_file: Path) -> None:
    folder = job_file.parent
    failures_file = folder / "failures.json"
    node_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "edgekit.train.distributed", "launch", str(failures_file),
               *torchrun_arguments(train_config, rendezvous, job_file, node_file)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process(train_config))}
    env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # c10d's warnings (a peer's host name it cannot look up, ...)
    if train_config.distributed.nnodes == 1:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one node: the ranks talk over the loopback only
    launcher = subprocess.Popen(command, env=env, preexec_fn=_stop_with_parent)
    try:
        returncode = launcher.wait()
    except BaseException:  # Ctrl-C or an error in the driver: torchrun stops its workers on SIGTERM
        launcher.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.wait(timeout=30)
        raise
    if returncode != 0:
        raise failure_error(folder, train_config, job_file)


def _stop_with_parent() -> None:
    """Runs in the launcher before exec: a driver killed with SIGKILL leaves no training running."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


#: how torchrun stops the ranks that are left after one failed: a rank that died of it is not a cause
STOPPED_BY_TORCHRUN = {"SIGTERM", "SIGINT"}


def failure_error(folder: Path, train_config, job_file: Path) -> EdgekitError:
    """One line for a failed torchrun, naming the cause: a rank killed from outside (the OOM killer, a user's
    SIGKILL, a crash), whose peers then report only a broken connection; else the first rank that reported an
    error; else the first that died."""
    processes_in_all = processes(train_config)
    stage = STAGE_OF_JOB.get(_job_kind(job_file), "training")
    errors = sorted((json.loads(path.read_text()) for path in (folder / "errors").glob("rank-*.json")),
                    key=lambda error: error["time"])
    failures = json.loads((folder / "failures.json").read_text()) if (folder / "failures.json").exists() else {}
    kept = "; the ranks were stopped and the last checkpoint is kept: rerun the same command to resume"
    killed = [failure for failure in failures.get("ranks", [])
              if failure["signal"] and failure["signal"] not in STOPPED_BY_TORCHRUN]
    if killed:
        first = min(killed, key=lambda failure: failure["time"])
        return EdgekitError(f"{stage} under torchrun: rank {first['rank']} of {processes_in_all} was killed by "
                            f"{first['signal']}{kept}")
    if errors:
        first = errors[0]
        error = EdgekitError(f"{stage} under torchrun: rank {first['rank']} of {processes_in_all} failed: "
                             f"{first['message']}{kept} (traceback: {first['traceback_file']})")
        error.exit_code = first["exit_code"]
        return error
    if failures.get("ranks"):
        first = min(failures["ranks"], key=lambda failure: failure["time"])
        how = (f"was killed by {first['signal']}" if first["signal"]
               else f"exited with code {first['exitcode']} without reporting an error")
        return EdgekitError(f"{stage} under torchrun: rank {first['rank']} of {processes_in_all} {how}{kept}")
    launcher = failures.get("launcher") or "torchrun exited with an error before starting the ranks"
    return EdgekitError(f"{stage} under torchrun: {launcher}")


def _job_kind(job_file: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(job_file.read_text()).get("kind", "")
    return ""


# --- the launcher and worker processes ----------------------------------------------------------------

def launch_main(failures_file: str, torchrun_args: list[str]) -> int:
    """torchrun's ``run()``; its failures go to ``failures_file`` instead of a table on stderr."""
    import logging

    os.environ["LOGLEVEL"] = "CRITICAL"  # the agent's own log lines: the driver prints the one that matters
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.root.manager.loggerDict):  # those made before LOGLEVEL was set
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    _store_on_loopback_endpoints()
    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as failed:
        ranks = [{"rank": global_rank, "exitcode": failure.exitcode, "time": failure.timestamp,
                  "signal": failure.signal_name() if failure.exitcode < 0 else None}
                 for global_rank, failure in failed.failures.items()]
        write_json(Path(failures_file), {"ranks": ranks})
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a rendezvous that timed out, a port in use: the launcher's own error
        write_json(Path(failures_file), {"launcher": f"{type(exc).__name__}: {_first_line(exc)}"})
        return 1
    return 0


def _store_on_loopback_endpoints() -> None:
    """torch's TCPStore server listens on every interface whatever host it is given: for a rendezvous
    endpoint on the loopback (every one-node build), node 0's store is handed a socket bound to that
    address instead, so nothing of the build can be reached from the network. Other endpoints keep
    torch's behaviour (docs/distributed.md says so)."""
    from torch.distributed.elastic.rendezvous import static_tcp_rendezvous

    make_store = static_tcp_rendezvous.TCPStore

    def store(host, port, world_size=None, is_master=False, *args, **kwargs):
        if is_master and _is_loopback(host) and "master_listen_fd" not in kwargs:
            server = socket.create_server((host, port), backlog=128)
            kwargs.update(master_listen_fd=server.detach(), use_libuv=True)  # the store owns the socket now
        return make_store(host, port, world_size, is_master, *args, **kwargs)

    static_tcp_rendezvous.TCPStore = store


def _is_loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


def worker_main(job_file: str, backend: str, node_file: str) -> int:
    """One rank: join the group, receive the job from rank 0, run it; errors go to ``errors/rank-R.json``."""
    errors_folder = Path(job_file).parent / "errors"
    global_rank = int(os.environ.get("RANK", "0"))
    try:
        if "nccl" in backend:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend)
        job = _receive_job(Path(job_file))
        if os.environ.get("LOCAL_RANK") == "0":
            Path(node_file).write_text(job["kind"])
        if job["kind"] != "finished":
            result = _run(job)
            if rank() == 0:
                write_json(Path(job["out_dir"]) / ".edgekit" / "distributed" / "result.json", result)
        dist.destroy_process_group()
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the rank exits
        return _report_error(errors_folder, global_rank, exc)


def _receive_job(job_file: Path) -> dict:
    holder = [json.loads(job_file.read_text()) if rank() == 0 else None]
    dist.broadcast_object_list(holder, src=0, device=torch.device("cpu"))  # gloo carries it, with or without CUDA
    return holder[0]


def _run(job: dict) -> dict:
    from edgekit import stages
    from edgekit.recipe.schema import Recipe
    from edgekit.runner import BuildContext

    context = BuildContext(Recipe.model_validate(job["recipe"]), Path(job["out_dir"]), dict(job["artifacts"]),
                           job["stage_key"], on_step=fault_injection())
    if job["kind"] == "train":
        return stages.train_float(context, **job["options"])
    return stages.qat_on_this_rank(context, **job["options"])


def _report_error(errors_folder: Path, global_rank: int, exc: BaseException) -> int:
    exit_code = getattr(exc, "exit_code", 1)
    message = str(exc) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {_first_line(exc)}"
    traceback_file = errors_folder / f"rank-{global_rank}.traceback"
    with contextlib.suppress(OSError):
        errors_folder.mkdir(parents=True, exist_ok=True)
        traceback_file.write_text("".join(traceback.format_exception(exc)))
        write_json(errors_folder / f"rank-{global_rank}.json", {
            "rank": global_rank, "message": message, "exit_code": exit_code, "time": time.time(),
            "traceback_file": str(traceback_file)})
    return exit_code if isinstance(exit_code, int) and exit_code > 0 else 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def main(argv: list[str]) -> int:
    if argv[:1] == ["launch"]:
        return launch_main(argv[1], argv[2:])
    if argv[:1] == ["worker"] and len(argv) == 4:
        return worker_main(*argv[1:])
    print("usage: python -m edgekit.train.distributed launch FAILURES TORCHRUN-ARGS... | "
          "worker JOB BACKEND NODE-FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
