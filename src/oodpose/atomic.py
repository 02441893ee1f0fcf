"""Write files and folders so that a killed job never leaves a half-written one behind, and a command
never replaces a folder it did not make.

A temporary sits beside its target as ``.<name>.<random>.tmp`` and is renamed onto it when complete;
one left by a killed job is removed the next time the same target is written. A folder written with
`atomic_dir` carries a marker naming the command that made it, and only that command may replace it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from oodpose.errors import InputError

log = logging.getLogger(__name__)
MARKER = ".oodpose"  # in every folder written by atomic_dir: the command that made it


def _default_mode(directory: bool) -> int:
    """The mode a plain open()/mkdir() would give (mkstemp/mkdtemp make private ones)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def remove_stale_temporaries(folder: Path, target: str = "*") -> None:
    """Delete temporaries of `target` (a name or glob) in `folder` that a killed job left behind."""
    for stale in folder.glob(f".{target}.*.tmp"):
        log.info("removing %s, left by an interrupted job", stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _default_mode(directory=False))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(folders: Iterable[str | os.PathLike]) -> None:
    """Stop, before any job, on a folder a run writes into that this user cannot write: the folder itself or,
    where it does not exist yet, the nearest folder above it (where it will be made). Snakemake would meet it
    as a PermissionError traceback once it prepares the job."""
    for folder in dict.fromkeys(map(Path, folders)):
        existing = next(path for path in (folder, *folder.parents) if path.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            target = "" if existing == folder else f" (where {folder} goes)"
            raise InputError(
                f"{existing}{target} is not writable by this user, and this run writes there: make it writable "
                f"(chmod -R u+w {existing}) or run the workflow in a folder of your own"
            )


def check_replaceable(path: Path, made_by: str) -> None:
    """Stop unless `path` is absent, an empty folder, or a folder that `made_by` made before."""
    if path.is_dir() and not path.is_symlink():
        marker = path / MARKER
        if not any(path.iterdir()) or (marker.is_file() and marker.read_text().strip() == made_by):
            return
    elif not path.exists() and not path.is_symlink():
        return
    raise InputError(
        f"{path} already exists and was not made by `oodpose {made_by}`, so it is left as it is: "
        "choose another output folder, or delete that one yourself if it can go"
    )


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, made_by: str):
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds.

    `made_by` names the command (e.g. 'prepare'); an existing `path` that it did not make stops the command.
    """
    path = Path(path)
    check_replaceable(path, made_by)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _default_mode(directory=True))
    try:
        (tmp / MARKER).write_text(f"{made_by}\n")
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
