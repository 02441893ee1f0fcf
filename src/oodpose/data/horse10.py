"""Download Horse-10 and lay it out as the data layer expects (meant for a machine with internet).

The images and labels are ``horse10.tar.xz`` in the Hugging Face dataset ``mwmathis/Horse-30``
(fetched with huggingface_hub, which resumes interrupted downloads); the official splits
``TrainTestInfo_shuffle{1,2,3}.csv`` and ``Horsescale.h5`` come from the public
``amathislab/Horse-10-benchmark`` repository, at a pinned commit and checked against their sha256.
``download.json`` in the dataset records what was fetched, the tarball's sha256 among it. The
tarball is extracted with tarfile's 'data' filter (no absolute paths, no '..', no links out of the
folder) into a temporary folder that replaces the target only once everything is in and checked,
so a half-done download is never taken for a dataset.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from oodpose.atomic import atomic_dir
from oodpose.data.labels import read_labels
from oodpose.data.splits import official_split_files
from oodpose.download import download_file, sha256_of
from oodpose.errors import InputError

HF_REPO = "mwmathis/Horse-30"
TARBALL = "horse10.tar.xz"
BENCHMARK_COMMIT = "efa4b7f233b51b4750fdb1499f554d2749ea56d1"  # amathislab/Horse-10-benchmark, 2023-04-19
BENCHMARK_URL = f"https://raw.githubusercontent.com/amathislab/Horse-10-benchmark/{BENCHMARK_COMMIT}"
BENCHMARK_SHA256 = {  # the files at BENCHMARK_COMMIT
    "TrainTestInfo_shuffle1.csv": "c1e7bf9194a105a35e5a6736e94d0239777fac9594e7620c1d64a9a9a96a8fc9",
    "TrainTestInfo_shuffle2.csv": "867e46ab6e286ee3b616a1d3737383d3b8f4ec5977ee62997977e919097adcc9",
    "TrainTestInfo_shuffle3.csv": "df760fa0af19d31a0616a5cf101285f9202cc919c6edaa62483c25d53bd6980f",
    "Horsescale.h5": "96e65a4444200868e23120f7edfa336bf901f141d610892b8dcefab130e39ebd",
}
BENCHMARK_FILES = tuple(BENCHMARK_SHA256)
DOWNLOAD_RECORD = "download.json"  # what was fetched, with each file's sha256
EXPECTED = {"individuals": 30, "frames": 8114, "bodyparts": 22}


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
    found = {
        "individuals": labels.frames["individual"].nunique(),
        "frames": len(labels.frames),
        "bodyparts": len(labels.bodyparts),
    }
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
    """Download, extract, check and lay out Horse-10 at `out` (`endpoint`: a hub mirror; default HF_ENDPOINT).

    `sha256` maps file names to the digests they must have: by default the benchmark files' at the pinned commit.
    """
    from huggingface_hub import hf_hub_download

    sha256 = BENCHMARK_SHA256 if sha256 is None else sha256
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
        digests = {TARBALL: sha256_of(tarball)} | {name: sha256_of(tmp / name) for name in BENCHMARK_FILES}
        record = {"hub_dataset": HF_REPO, "tarball": TARBALL, "benchmark_url": benchmark_url, "sha256": digests}
        (tmp / DOWNLOAD_RECORD).write_text(json.dumps(record, indent=2))
    return Path(out)
