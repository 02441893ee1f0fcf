"""Choose the compute device and the settings that make it fast; shared by training and evaluation.

CUDA: mixed precision (bf16 where the GPU supports it, else fp16 with loss scaling), channels_last,
cudnn.benchmark, pinned memory and loader workers, one per CPU of the job's allocation but the one that
drives the GPU (at most 8 a loader); on a machine with several GPUs, a GPU of the process's own (`own_gpu`) and its
share of the CPUs, so that jobs side by side, one a GPU, do not each start workers for all of them.
CPU: channels_last, intra-op threads on `threads` or every allocated CPU, fp32, no loader workers unless
asked for (they would compete for the same cores), and denormal floats flushed to zero, as TensorFlow
(DeepLabCut's engine) does: training from scratch makes some, and arithmetic on them is so slow on x86
that a MobileNetV2-0.35 iteration took 154 ms instead of 134 ms (bench/README.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from oodpose.errors import InputError

log = logging.getLogger(__name__)
MAX_LOADER_WORKERS = 8  # a loader's: a loader ratio of 1.02 on an H200 with 8 (bench/README.md)
GPU_LOCKS = Path(tempfile.gettempdir()) / f"oodpose-gpus-{os.getuid()}"  # a lock file per GPU, named by its UUID
HELD_GPUS = []  # this process's GPU lock, open for its life


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None = full precision
    workers: int
    pin_memory: bool

    @property
    def precision(self) -> str:
        """The arithmetic a training step runs in: bfloat16 or float16 (mixed), tf32 (CUDA's full precision) or
        float32. It defines a cell's numbers, so a snapshot resumes only in the precision it was made in."""
        if self.amp_dtype is not None:
            return str(self.amp_dtype).removeprefix("torch.")
        return "tf32" if self.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "float32"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        # no cache of cast weights: a CUDA graph must recast them at every replay
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=False)


def allocated_cpus() -> int:
    """The CPUs this job may use: its affinity mask (narrowed by SLURM's task binding or cgroup, or taskset),
    and no more than SLURM allocated on the node where a cluster does not bind CPUs (SLURM_CPUS_ON_NODE)."""
    cpus = len(os.sched_getaffinity(0))
    slurm = os.environ.get("SLURM_CPUS_ON_NODE", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def loader_workers(gpus: int = 1, loaders: int = 1) -> int:
    """A GPU job's default loader workers: its share of the allocated CPUs, one GPU's of the `gpus` it sees,
    but the CPU that launches its GPU's work; at most `MAX_LOADER_WORKERS` for each of its `loaders` (a fused
    job's cells draw from several), so that a job given more CPUs for more loaders uses them."""
    return max(0, min(MAX_LOADER_WORKERS * loaders, allocated_cpus() // gpus - 1))


def job_workers(device: torch.device, workers: int | None, loaders: int = 1) -> int:
    """A job's loader workers: those asked for; else, on CUDA, its share of the allocation for its `loaders`
    (`loader_workers`); else none (on a CPU the job's threads compute, and a worker would compete with them)."""
    if workers is not None:
        return workers
    return loader_workers(torch.cuda.device_count(), loaders) if device.type == "cuda" else 0


def runtime(device: str = "auto", threads: int | None = None, workers: int | None = None, amp: bool = True) -> Runtime:
    """Resolve 'auto' | 'cpu' | 'cuda[:i]' into a configured `Runtime`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but no CUDA GPU is visible; use --device cpu")
        dev = dev if dev.index is not None else own_gpu()
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
        return Runtime(dev, dtype, job_workers(dev, workers), pin_memory=True)
    torch.set_num_threads(threads or allocated_cpus())
    torch.set_flush_denormal(True)
    return Runtime(dev, None, job_workers(dev, workers), pin_memory=False)


@functools.cache
def own_gpu() -> torch.device:
    """The GPU this process runs on: the only one it sees (a SLURM job's), else the first that no other oodpose
    process of this user holds, held until this one exits, so that jobs run side by side on one machine (Snakemake's
    `--resources gpu=N`) each get a GPU of their own; while every GPU is held, it waits for one."""
    count = torch.cuda.device_count()
    if count == 1:
        return torch.device("cuda")
    names = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    index, lock = claim_one(names, GPU_LOCKS)
    HELD_GPUS.append(lock)  # the kernel releases the lock when the process exits
    torch.cuda.set_device(index)  # streams, graphs and autocast checks without a device use this one
    return torch.device("cuda", index)


def claim_one(names: list[str], folder: Path, poll_s: float = 2.0):
    """(index, open lock file) of the first of `names` whose lock file in `folder` no other holder has locked."""
    folder.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for index, name in enumerate(names):
            lock = open(folder / f"{name}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return index, lock
            except BlockingIOError:
                lock.close()
        if not waiting:
            log.info("every GPU (%d) is held by another oodpose job; waiting for one (locks in %s)", len(names), folder)
            waiting = True
        time.sleep(poll_s)


def cxx_compiler() -> str:
    """The C++ compiler torch.compile uses on CPU: ``$CXX``, else g++."""
    return os.environ.get("CXX", "g++")
