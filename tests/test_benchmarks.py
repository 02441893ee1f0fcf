"""Every benchmark runs in its tiny mode and prints one JSON object, so none of them rots.

The timings themselves are not checked here: benchmarks check speed, tests check behaviour.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args",
    [
        ("train_overhead.py", ["--tiny"]),
        ("cpu_defaults.py", ["--tiny"]),
        ("eval_throughput.py", ["--tiny"]),
        ("data.py", ["--tiny"]),
        ("demo.py", ["--tiny"]),
        ("demo.py", ["--tiny", "--config", "config/laptop.yaml"]),
        ("workflow_dag.py", ["--repeats", "1"]),
        ("backbone_estimates.py", ["convnext_atto", "vit_small_patch16"]),
    ],
)
def test_benchmark_tiny_mode_prints_json(script, args):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["benchmark"] == script.removesuffix(".py") and "machine" in report


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="bench/gpu.py needs a CUDA GPU")
def test_gpu_benchmark_tiny_mode_prints_json(tmp_path):
    command = [sys.executable, str(BENCH / "gpu.py"), str(tmp_path), "--tiny", "--only", "graphs", "hours", "match"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["benchmark"] == "gpu"


def test_demo_verdict_is_plain_json():
    """A run within its time target compared numpy PCKs and crashed on printing them (numpy bool)."""
    sys.path.insert(0, str(BENCH))
    import numpy as np
    from demo import verdict

    cells = {"lite0/imagenet/1": {"within": np.float64(0.6), "ood": np.float64(0.1)}}
    assert json.loads(json.dumps(verdict(800.0, cells, 900, 0.5)))["meets_target"] is True
    cells["lite0/imagenet/2"] = {"within": np.float64(0.4), "ood": np.float64(0.1)}
    assert json.loads(json.dumps(verdict(800.0, cells, 900, 0.5)))["meets_target"] is False


def test_publish_copies_the_readme_figures_with_their_report(tmp_path):
    """The README's laptop-study figures and findings are copied together with the run that made them."""
    sys.path.insert(0, str(BENCH))
    from demo import PUBLISHED, SUMMARY, publish

    summary = tmp_path / "run" / SUMMARY
    for name in PUBLISHED:
        (summary / name).parent.mkdir(parents=True, exist_ok=True)
        (summary / name).write_text(f"content of {name}")
    publish(tmp_path / "run", {"wall_s": 1.0, "commit": "abc1234"}, tmp_path / "docs")
    assert (tmp_path / "docs" / "findings.md").read_text() == "content of findings.md"
    assert (tmp_path / "docs" / "figure5b.png").read_text() == "content of figures/figure5b.png"
    assert json.loads((tmp_path / "docs" / "run.json").read_text())["commit"] == "abc1234"
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "figure4_5a.png",
        "figure5b.png",
        "findings.md",
        "run.json",
    ]


def test_publish_refuses_a_dry_run():
    """A dry run has no figures: asking it to publish is refused by name, before anything runs or is written."""
    command = [sys.executable, str(BENCH / "demo.py"), "--tiny", "--publish", "docs/nowhere"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--publish docs/nowhere" in result.stderr and result.stdout == ""
    assert not (BENCH.parent / "docs" / "nowhere").exists()
