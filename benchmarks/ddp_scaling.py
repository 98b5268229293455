"""Data-parallel scaling: training images/s with 1 and 2 processes (1 thread each) on this machine's CPUs,
and the efficiency ratio images/s(N) / (N x images/s(1)); on a CUDA machine also 1..N GPUs, each with
train.amp off/bf16/fp16 and with train.compile.

Every figure is edgekit's own training loop (``edgekit.train.train``, DistributedDataParallel under
torchrun, the global batch split between the processes) on real Fashion-MNIST images, timed on rank 0 from
the end of the warm-up steps to the last step (launch, imports, DDP construction and compilation
excluded). Run from the repository root:

    .venv/bin/python benchmarks/ddp_scaling.py [--steps 60] [--warmup 10] [--resolution 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per configuration (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--resolution", type=int, default=64, help="input pixels (default 64, the smoke recipe's)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64, the smoke recipe's)")
    parser.add_argument("--cpu-processes", type=int, nargs="+", default=[1, 2], help="CPU process counts (default 1 2)")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker[0]), Path(args.worker[1]))
    import torch

    base = {"steps": args.steps, "warmup": args.warmup, "resolution": args.resolution, "batch": args.batch}
    print(f"machine: {os.cpu_count()} CPU cores, load average {_load()} before the runs; torch {torch.__version__}")
    print("model: mobilenet_v1 alpha 0.25, 10 classes; real Fashion-MNIST images; edgekit's training loop under "
          f"torchrun; global batch {args.batch}; {args.warmup} warm-up + {args.steps} timed steps per row\n")
    cpu_rows = [run({**base, "device": "cpu", "amp": "off", "compile": False}, processes)
                for processes in args.cpu_processes]
    print_table("CPU, gloo, 1 thread per process", cpu_rows)
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        gpu_rows = [run({**base, "device": "cuda", "amp": "off", "compile": False}, processes)
                    for processes in range(1, gpus + 1)]
        print_table(f"CUDA ({torch.cuda.get_device_name(0)}), NCCL, one process per GPU", gpu_rows)
        variants = [run({**base, "device": "cuda", "amp": amp, "compile": compiled}, 1)
                    for amp, compiled in (("off", False), ("bf16", False), ("fp16", False), ("off", True), ("bf16", True))]
        print_table("CUDA, 1 GPU: train.amp and train.compile", variants, baseline=variants[0])
    else:
        print("\nno CUDA device here: GPU scaling, train.amp (bf16/fp16 on CUDA) and train.compile not measured")
    print(f"\nload average after the runs: {_load()} (a shared machine: other jobs ran at the same time)")
    return 0


def run(config: dict, processes: int) -> dict:
    """One configuration under torchrun; rank 0's measurement."""
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as folder:
        result = Path(folder) / "result.json"
        from edgekit.train.distributed import free_port

        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
                   "--rdzv-backend", "static", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--node-rank", "0",
                   "--max-restarts", "0", __file__, "--worker", json.dumps(config), str(result)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEKIT_NO_PROGRESS": "1", "LOGLEVEL": "ERROR"}
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        subprocess.run(command, check=True, cwd=REPO, env=env)
        return {**config, "processes": processes, **json.loads(result.read_text())}


def worker(config: dict, result: Path) -> int:
    import torch
    import torch.distributed as dist

    from edgekit.data import BatchTransform, build_split
    from edgekit.models import create_model
    from edgekit.recipe.schema import DataSection, TrainSection
    from edgekit.train import configure_torch, distributed, train

    cuda = config["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    configure_torch(None if cuda else 1)
    total = config["warmup"] + config["steps"]
    images = total * config["batch"]
    dataset = build_split(DataSection(max_train_samples=images), config["resolution"], 0, "train")
    transform = BatchTransform(config["resolution"], [0.5] * 3, [0.5] * 3, augment=True)
    torch.manual_seed(0)
    device = distributed.process_device(torch.device(config["device"]))
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10).to(device)
    train_config = TrainSection(epochs=1, batch_size=config["batch"], lr=0.01, device=config["device"],
                                threads=None if cuda else 1, checkpoint_every_steps=10 * total, amp=config["amp"],
                                compile=config["compile"])
    marks: dict[int, float] = {}

    def mark(step: int) -> None:
        if step in (config["warmup"], total - 1):
            if cuda:
                torch.cuda.synchronize()
            marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="ddp-scaling-ckpt-") as folder:
        train(model, dataset, transform, train_config, seed=0, checkpoint_path=Path(folder) / "checkpoint.pt",
              checkpoint_key="benchmark", on_step=mark)
    timed_steps = total - 1 - config["warmup"]
    seconds = marks[total - 1] - marks[config["warmup"]]
    if distributed.rank() == 0:
        result.write_text(json.dumps({"images_per_s": timed_steps * config["batch"] / seconds, "seconds": seconds,
                                      "timed_steps": timed_steps, "threads": torch.get_num_threads()}))
    dist.destroy_process_group()
    return 0


def print_table(title: str, rows: list[dict], baseline: dict | None = None) -> None:
    single = baseline or next(row for row in rows if row["processes"] == 1)
    print(f"\n{title}")
    print(f"{'processes':>9}  {'threads/proc':>12}  {'amp':>4}  {'compile':>7}  {'images/s':>9}  {'efficiency':>10}")
    for row in rows:
        if baseline is None:
            ratio = row["images_per_s"] / (row["processes"] * single["images_per_s"])
            label = f"{ratio:.2f}"
        else:
            label = f"x{row['images_per_s'] / single['images_per_s']:.2f}"
        print(f"{row['processes']:>9}  {row['threads']:>12}  {row['amp']:>4}  {str(row['compile']):>7}  "
              f"{row['images_per_s']:>9.1f}  {label:>10}")
    if baseline is None:
        print("efficiency = images/s(N) / (N x images/s(1)); 1.00 is perfect scaling")
    else:
        print("last column: images/s relative to amp off, no compile")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
