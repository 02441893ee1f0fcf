"""Download Horse-10 and lay it out as the data layer expects (meant for a machine with internet).

The images and labels are ``horse10.tar.xz`` in the Hugging Face dataset ``mwmathis/Horse-30``
(fetched with huggingface_hub, which resumes interrupted downloads); the official splits
``TrainTestInfo_shuffle{1,2,3}.csv`` and ``Horsescale.h5`` come from the public
``amathislab/Horse-10-benchmark`` repository. The tarball is extracted with tarfile's 'data'
filter (no absolute paths, no '..', no links out of the folder) into a temporary folder that
replaces the target only once everything is in and checked, so a half-done download is never
taken for a dataset.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

from oodpose.atomic import atomic_dir
from oodpose.data.labels import read_labels
from oodpose.data.splits import official_split_files
from oodpose.download import download_file
from oodpose.errors import InputError

HF_REPO = "mwmathis/Horse-30"
TARBALL = "horse10.tar.xz"
BENCHMARK_URL = "https://raw.githubusercontent.com/amathislab/Horse-10-benchmark/main"
BENCHMARK_FILES = ("TrainTestInfo_shuffle1.csv", "TrainTestInfo_shuffle2.csv", "TrainTestInfo_shuffle3.csv",
                   "Horsescale.h5")  # fmt: skip
EXPECTED = {"individuals": 30, "frames": 8114, "bodyparts": 22}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def extract(tarball: Path, into: Path) -> Path:
    """Extract safely and return the folder that holds ``labeled-data``."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(
            f"{tarball}: cannot extract ({type(err).__name__}: {err}); delete it and download again"
        ) from err
    roots = [p.parent for p in into.rglob("labeled-data") if p.is_dir()]
    if not roots:
        top = sorted(p.name for p in into.iterdir())
        raise InputError(f"{tarball}: no labeled-data/ folder in the archive (top level: {top})")
    return min(roots, key=lambda p: len(p.parts))


def check_dataset(root: Path, expected: dict[str, int]) -> None:
    """The dataset holds what Horse-10 holds; any difference names what is wrong."""
    labels = read_labels(root)
    found = {"individuals": labels.frames["individual"].nunique(), "frames": len(labels.frames),
             "bodyparts": len(labels.bodyparts)}  # fmt: skip
    wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
    if wrong:
        raise InputError(
            f"{root}: unexpected dataset: " + ", ".join(f"{k} {f} (expected {e})" for k, (f, e) in wrong.items())
        )
    missing = [name for name in BENCHMARK_FILES if not (root / name).exists()]
    if missing or len(official_split_files(root)) != 3:
        raise InputError(f"{root}: missing benchmark files {missing}")


def download_horse10(
    out: str | Path,
    benchmark_url: str = BENCHMARK_URL,
    expected: dict[str, int] = EXPECTED,
    sha256: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download, extract, check and lay out Horse-10 at `out` (`endpoint`: a hub mirror; default HF_ENDPOINT)."""
    from huggingface_hub import hf_hub_download

    sha256 = sha256 or {}
    try:
        tarball = Path(hf_hub_download(HF_REPO, TARBALL, repo_type="dataset", cache_dir=cache_dir, endpoint=endpoint))
    except Exception as err:  # network and hub failures come in many types
        raise InputError(f"downloading {TARBALL} from the Hugging Face dataset {HF_REPO} failed: {err}") from err
    if TARBALL in sha256 and sha256_of(tarball) != sha256[TARBALL]:
        raise InputError(f"{tarball}: sha256 does not match the expected {sha256[TARBALL]}; delete it and retry")
    with atomic_dir(out, made_by="download-horse10") as tmp:
        root = extract(tarball, tmp / ".extract")
        for child in root.iterdir():
            shutil.move(str(child), tmp / child.name)
        shutil.rmtree(tmp / ".extract")
        for name in BENCHMARK_FILES:
            download_file(f"{benchmark_url}/{name}", tmp / name, sha256.get(name))
        check_dataset(tmp, expected)
    return Path(out)
