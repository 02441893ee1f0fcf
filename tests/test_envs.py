"""The conda env the rules use, the hashed pip lock and pyproject.toml pin the same versions."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ORCHESTRATION = {"snakemake", "snakemake-executor-plugin-slurm"}  # the host runs these, not the rules' env


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_env_lock_and_pyproject_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"])
    assert len(declared) == len(project["dependencies"]), "every runtime dependency is pinned with =="
    env = yaml.safe_load((REPO / "envs" / "oodpose.yaml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert "python=3.11" in env["dependencies"] and project["requires-python"] == ">=3.11,<3.12"
    pip_side = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = pins(pip_side)
    assert env_pins == {k: v for k, v in declared.items() if k not in ORCHESTRATION}
    lock_lines = (REPO / "envs" / "requirements.lock").read_text().splitlines()
    locked = pins(lock_lines)
    assert {k: locked.get(k) for k in declared} == declared
    assert all("--hash=sha256:" in line for line in lock_lines if not line.startswith("#"))


def test_the_corrupt_rules_env_is_the_rules_env_with_the_horse_c_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = pins(project["optional-dependencies"]["horse-c"])
    assert len(extra) == len(project["optional-dependencies"]["horse-c"]), "every horse-c dependency is pinned"
    assert extra["opencv-python"] == pins(project["dependencies"])["opencv-python-headless"]  # one OpenCV, one cv2
    assert "oodpose[horse-c]" in project["optional-dependencies"]["dev"]  # the tests corrupt frames
    envs = {name: yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text()) for name in ("oodpose", "horse-c")}
    sides = {
        name: pins(next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))) for name, env in envs.items()
    }
    assert sides["horse-c"] == sides["oodpose"] | extra
    assert envs["horse-c"]["channels"] == envs["oodpose"]["channels"]
    conda_side = [d for d in envs["horse-c"]["dependencies"] if isinstance(d, str)]
    assert conda_side == [d for d in envs["oodpose"]["dependencies"] if isinstance(d, str)] + ["libgl"]
    base = pins((REPO / "envs" / "requirements.lock").read_text().splitlines())
    locked = pins((REPO / "envs" / "horse-c.lock").read_text().splitlines())
    assert locked == locked | base | extra and set(locked) - set(base) >= set(extra)  # the base lock, plus the extra
    rules = (REPO / "rules" / "data.smk").read_text().split("rule corrupt:")[1].split("\nrule ")[0]
    assert '"../envs/horse-c.yaml"' in rules
