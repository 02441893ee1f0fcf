"""Wheels of the locked environment for an offline machine whose Python already holds part of it.

A GPU node's image or a PyTorch container brings its own torch, CUDA and much of the scientific stack, and
may reach no package index. This downloads, on a machine that can, the wheels of every package in
`envs/requirements.lock` that the target lacks, at the lock's versions, for the target's Python and
platform (sdist-only packages are built into wheels here; they are pure Python):

    python envs/wheelhouse.py WHEELS --have have.txt [--python-version 3.12] [--lock envs/horse-c.lock]
                                     [--carry timm] [--skip NAME ...]

`have.txt` is the target's `pip list --format=freeze` (or one package name a line). `--carry` takes a
package at the lock's version even where the target has its own; `--skip` leaves one out. On the target:

    pip install --no-index --no-deps --target SITE WHEELS/*.whl && export PYTHONPATH=SITE:src

The target's own torch and other packages then run the project's code at their versions, which CI does
not test (it tests the lock on CPython 3.11): record them beside any figure measured there.
Prints one JSON object: the wheels, their total size, and what was left to the target.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).with_name("requirements.lock")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]


def canonical(name: str) -> str:
    """PEP 503's normalised name: what pip compares."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """{canonical name: version} of the lock's `name==version --hash=...` lines."""
    pins = (re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line) for line in lock.read_text().splitlines())
    return {canonical(m.group(1)): m.group(2) for m in pins if m}


def installed_names(have: Path) -> set[str]:
    """Names in a `pip list --format=freeze` file (or one name a line), ignoring comments and blank lines."""
    lines = (line.split("#")[0].strip() for line in have.read_text().splitlines())
    return {canonical(re.split(r"[=<>~!@ ;\[]", line)[0]) for line in lines if line}


def wanted(pins: dict[str, str], have: set[str], carry: list[str], skip: list[str]) -> dict[str, str]:
    """The locked packages the target lacks, plus `carry`, minus `skip`."""
    unknown = sorted({canonical(n) for n in carry + skip} - set(pins))
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} not in the lock; name packages as the lock does")
    keep = (set(pins) - have | {canonical(n) for n in carry}) - {canonical(n) for n in skip}
    return {name: pins[name] for name in sorted(keep)}


def download(packages: dict[str, str], out: Path, python_version: str, pip_options: list[str]) -> list[Path]:
    """Wheels for the target; an sdist-only package is downloaded, built here, and its sdist removed."""
    out.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    target = ["--python-version", python_version, "--implementation", "cp"]
    target += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    requirements = [f"{name}=={version}" for name, version in packages.items()]
    before = set(out.iterdir())
    options = ["--no-deps", "--no-build-isolation", "--prefer-binary", *target, *pip_options]
    run([*pip, "download", *options, "-d", out, *requirements])
    sdists = sorted(p for p in set(out.iterdir()) - before if not p.name.endswith(".whl"))
    if sdists:
        run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", out, *sdists])
        for sdist in sdists:
            sdist.unlink()
    built = sorted(set(out.iterdir()) - before)
    compiled = [p.name for p in built if p.name.endswith(".whl") and not p.name.endswith("-none-any.whl")]
    mismatched = [n for n in compiled if f"cp{python_version.replace('.', '')}" not in n and "abi3" not in n]
    if mismatched:
        raise SystemExit(f"error: {', '.join(mismatched)} built for this Python, not {python_version}; --skip them")
    return built


def run(command: list) -> None:
    """A pip command; on failure, its output and one line that says which step failed."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"error: `pip {command[3]}` failed; its output is above")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the wheels")
    parser.add_argument("--have", type=Path, required=True, help="the target's `pip list --format=freeze`")
    parser.add_argument("--python-version", default="3.12", help="the target's Python (default 3.12)")
    parser.add_argument("--carry", nargs="*", default=[], help="take these at the lock's version regardless")
    parser.add_argument("--skip", nargs="*", default=[], help="leave these out")
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--pip-option", action="append", default=[], help="passed to pip, e.g. --find-links=DIR")
    args = parser.parse_args(argv)
    pins = locked(args.lock)
    have = installed_names(args.have)
    packages = wanted(pins, have, args.carry, args.skip)
    wheels = download(packages, args.out, args.python_version, args.pip_option)
    report = {
        "python_version": args.python_version,
        "wheels": [p.name for p in wheels],
        "megabytes": round(sum(p.stat().st_size for p in wheels) / 2**20, 1),
        "left_to_target": sorted(set(pins) & have - set(packages)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
