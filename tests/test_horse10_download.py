"""download_horse10 end to end against a loopback server standing in for the hub and the benchmark repository."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oodpose.data.cache import Cache, prepare_cache
from oodpose.data.horse10 import (
    BENCHMARK_FILES,
    BENCHMARK_SHA256,
    BENCHMARK_URL,
    check_dataset,
    download_horse10,
    extract,
)
from oodpose.data.labels import read_labels
from oodpose.errors import InputError


def tarball_of(folder: Path, prefix: str = "horse10", skip: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and not relative.startswith(BENCHMARK_FILES) and not (skip and skip in relative):
                archive.add(path, arcname=f"{prefix}/{relative}")
    return buffer.getvalue()


@pytest.fixture
def server(synthetic_dataset):
    """Serves /datasets/mwmathis/Horse-30/resolve/main/horse10.tar.xz and /bench/<benchmark file>."""
    files = {
        f"/bench/{name}": (synthetic_dataset / name).read_bytes() for name in BENCHMARK_FILES if name != "Horsescale.h5"
    }
    files["/bench/Horsescale.h5"] = (synthetic_dataset / "Horsescale.h5").read_bytes()
    files["/datasets/mwmathis/Horse-30/resolve/main/horse10.tar.xz"] = tarball_of(synthetic_dataset)

    class Handler(BaseHTTPRequestHandler):
        def _head(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            if body is not None:
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            return body

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            body = self._head()
            if body:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", files
    httpd.shutdown()


def served_sha256(files: dict) -> dict:
    """The sha256 of the benchmark files the loopback server stands in with (synthetic, not the pinned ones)."""
    return {name: hashlib.sha256(files[f"/bench/{name}"]).hexdigest() for name in BENCHMARK_FILES}


def run_download(url, out, tmp_path, files, **kwargs):
    expected = {"individuals": 5, "frames": 150, "bodyparts": 22}
    kwargs = {"sha256": served_sha256(files)} | kwargs
    return download_horse10(
        out, benchmark_url=f"{url}/bench", expected=expected, cache_dir=tmp_path / "hf", endpoint=url, **kwargs
    )


def test_download_lays_out_a_readable_dataset(server, tmp_path):
    url, files = server
    out = run_download(url, tmp_path / "horse10", tmp_path, files)
    labels = read_labels(out)
    assert len(labels.frames) == 150 and (out / "TrainTestInfo_shuffle3.csv").exists()
    assert (out / "labeled-data").is_dir() and not (out / ".extract").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "horse10"]  # no temporary folder left
    record = json.loads((out / "download.json").read_text())
    tarball = files["/datasets/mwmathis/Horse-30/resolve/main/horse10.tar.xz"]
    assert record["sha256"]["horse10.tar.xz"] == hashlib.sha256(tarball).hexdigest()
    assert Cache(prepare_cache(out, tmp_path / "cache")).meta["download"] == record  # and it reaches the outputs


def test_the_benchmark_files_are_pinned_to_a_commit_and_checked(server, tmp_path, shared_data):
    assert BENCHMARK_URL.endswith("/amathislab/Horse-10-benchmark/efa4b7f233b51b4750fdb1499f554d2749ea56d1")
    for name, digest in BENCHMARK_SHA256.items():  # the copies of those files at that commit
        assert hashlib.sha256((shared_data / "horse10-benchmark" / name).read_bytes()).hexdigest() == digest
    url, files = server
    with pytest.raises(InputError, match="TrainTestInfo_shuffle1.csv: sha256 .* does not match the expected c1e7bf"):
        run_download(url, tmp_path / "h", tmp_path, files, sha256=None)  # the default: the pinned files' sha256
    assert not (tmp_path / "h").exists()


def test_unexpected_counts_and_checksums_are_named(server, tmp_path):
    url, files = server
    with pytest.raises(InputError, match=r"individuals 5 \(expected 30\), frames 150 \(expected 8114\)"):
        download_horse10(
            tmp_path / "h",
            benchmark_url=f"{url}/bench",
            cache_dir=tmp_path / "hf",
            endpoint=url,
            sha256=served_sha256(files),
        )
    with pytest.raises(InputError, match="Horsescale.h5: sha256 .* does not match"):
        run_download(url, tmp_path / "h", tmp_path, files, sha256={"Horsescale.h5": "0" * 64})
    assert not (tmp_path / "h").exists()


def test_archive_without_labeled_data_or_with_missing_images(tmp_path, synthetic_dataset):
    bad = tmp_path / "bad.tar.xz"
    bad.write_bytes(tarball_of(synthetic_dataset / "labeled-data" / "BayHorse01", prefix="other"))
    with pytest.raises(InputError, match=r"no labeled-data/ folder in the archive \(top level: \['other'\]\)"):
        extract(bad, tmp_path / "x")
    partial = tmp_path / "partial.tar.xz"
    partial.write_bytes(tarball_of(synthetic_dataset, skip="BayHorse01/0003.png"))
    root = extract(partial, tmp_path / "y")
    with pytest.raises(InputError, match="0003.png: image listed in the labels is missing"):
        check_dataset(root, {"individuals": 5, "frames": 150, "bodyparts": 22})


def test_path_escapes_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.xz"
    with tarfile.open(evil, "w:xz") as archive:
        data = b"x"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match="cannot extract"):
        extract(evil, tmp_path / "into")
    assert not (tmp_path / "outside.txt").exists()


def test_download_rule_through_the_workflow(server, tmp_path, monkeypatch):
    import yaml
    from test_workflow import REPO, snakemake

    url, files = server
    shutil.copytree(REPO / "config", tmp_path / "config")
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    config["datasets"]["horse10"] |= {
        "benchmark_url": f"{url}/bench",
        "benchmark_sha256": served_sha256(files),
        "expect": {"individuals": 5, "frames": 150, "bodyparts": 22},
    }
    (tmp_path / "config" / "mirror.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snakemake(tmp_path, "data/horse10", "--cores", "1", "--configfile", "config/mirror.yaml")
    assert len(read_labels(tmp_path / "data" / "horse10").frames) == 150
    assert (tmp_path / "data" / "horse10" / "Horsescale.h5").exists()


def test_cut_downloads_fail_cleanly(tmp_path):
    """A server that promises more bytes than it sends, and one that is not there."""
    from oodpose.download import download_file

    class Liar(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a part")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InputError, match="Horsescale.h5: received 11 bytes, expected 1000; the download was cut"):
            download_file(f"http://127.0.0.1:{httpd.server_port}/Horsescale.h5", tmp_path / "Horsescale.h5")
    finally:
        httpd.shutdown()
    with pytest.raises(InputError, match="download failed"):
        download_file("http://127.0.0.1:9/x.csv", tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
