"""Downloads that never leave a half-written file: the byte count (and a sha256, when known) is checked first."""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from pathlib import Path

from oodpose.atomic import atomic_file
from oodpose.errors import InputError


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download_file(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Fetch `url` to `dest` atomically, checking the byte count (and the sha256 when given)."""
    digest = hashlib.sha256()
    with atomic_file(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                expected = int(response.headers.get("Content-Length", -1))
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
        except (http.client.HTTPException, OSError) as err:  # URLError, timeouts and cut transfers among them
            raise InputError(f"{url}: download failed ({type(err).__name__}: {err}); rerun to start it again") from err
        size = tmp.stat().st_size
        if expected >= 0 and size != expected:
            raise InputError(f"{url}: received {size} bytes, expected {expected}; the download was cut, retry")
        if sha256 and digest.hexdigest() != sha256:
            raise InputError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
    return dest
