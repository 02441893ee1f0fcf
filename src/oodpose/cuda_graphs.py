"""Replay the training step from CUDA graphs: one launch per iteration instead of hundreds.

At the paper's batch of 8 small frames a GPU spends most of a step waiting for the host to launch
kernels (bench/README.md). A CUDA graph records a step's kernels once and replays them with one
launch; the kernels, their order and their arithmetic stay the same, so the losses match the eager
loop's (bench/gpu.py measures it). Augmentation's scale jitter gives batches a few canvas sizes, so
there is one graph per input shape. A shape's first batch runs eagerly (a real iteration, on a side
stream, as capture requires): it autotunes cuDNN and creates the optimiser's state; its second is
captured, and every later one replays. All graphs share one memory pool: they run one at a time on
one stream, and what outlives a replay (weights, optimiser state, static inputs and outputs) is held.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from oodpose.errors import InputError, first_line

Step = Callable[..., torch.Tensor]
# A shape's graph is captured mid-run, while the loader's pin-memory thread keeps pinning batches: in CUDA's
# default ("global") mode its host allocations would break the capture and fail that thread, and with it the
# job. "thread_local" restricts only the capturing thread; the pinning thread's buffers are never in a graph.
CAPTURE_MODE = "thread_local"


class GraphedStep:
    """`step(*inputs) -> tensor`, replayed from a CUDA graph per input shape; returns a fresh tensor."""

    def __init__(self, step: Step):
        self.step = step
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]] = {}
        self.seen: set[tuple] = set()
        self.pool = torch.cuda.graph_pool_handle()
        self.side_stream = torch.cuda.Stream()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        shape = tuple((tuple(t.shape), t.dtype) for t in inputs)
        if shape not in self.graphs:
            if shape not in self.seen:
                self.seen.add(shape)
                return self.eager(inputs)
            self.graphs[shape] = self.capture(inputs)
        graph, static_inputs, static_output = self.graphs[shape]
        for static, new in zip(static_inputs, inputs):
            static.copy_(new, non_blocking=True)
        graph.replay()
        return static_output.clone()  # the next replay overwrites the static output

    def eager(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream):
            output = self.step(*inputs)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        return output

    def capture(self, inputs: tuple[torch.Tensor, ...]):
        """Record the step on copies of `inputs` (capture runs nothing); the caller's replay runs it."""
        static_inputs = tuple(t.clone() for t in inputs)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode=CAPTURE_MODE):
                static_output = self.step(*static_inputs)
        except torch.OutOfMemoryError:
            raise  # the device's own message; a fused job says which number to change
        except RuntimeError as err:  # an operation a graph cannot hold (a host sync, a dynamic shape): say the way out
            raise InputError(
                f"CUDA graphs could not record this network's training step on inputs of shape "
                f"{[tuple(t.shape) for t in inputs]} ({first_line(err)}); train it without them "
                "(config training: cuda_graphs: false, or leave out --cuda-graphs): the same kernels run eagerly, "
                "and the cell resumes from its last snapshot"
            ) from err
        return graph, static_inputs, static_output
