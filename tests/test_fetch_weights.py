"""Fetching timm weights through the Hugging Face hub protocol, against a local server standing in for the hub."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from oodpose.backbones import get_backbone
from oodpose.models import build_model, create_backbone


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A loopback HTTP server serving timm/resnet50.tv_in1k/model.safetensors as the hub does."""
    state = create_backbone(get_backbone("resnet50")).state_dict()
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    payload = path.read_bytes()
    requests = []

    class Hub(BaseHTTPRequestHandler):
        def _head(self) -> bool:
            requests.append((self.command, self.path))
            if self.path != "/timm/resnet50.tv_in1k/resolve/main/model.safetensors":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
            self.send_header("ETag", f'"{hashlib.sha256(payload).hexdigest()}"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            return True

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            if self._head():
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state, requests
    server.shutdown()


def fetch(out: Path, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "oodpose", "fetch-weights", "resnet50", str(out)]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_fetch_from_the_hub_then_train_offline(hub, tmp_path):
    endpoint, state, requests = hub
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = fetch(tmp_path / "resources" / "resnet50.safetensors", env)
    assert result.returncode == 0, result.stderr
    assert ("GET", "/timm/resnet50.tv_in1k/resolve/main/model.safetensors") in requests
    fetched = load_file(str(tmp_path / "resources" / "resnet50.safetensors"))
    assert all(torch.equal(fetched[k], v) for k, v in state.items())
    model = build_model(
        get_backbone("resnet50"), 22, "imagenet", weights=tmp_path / "resources" / "resnet50.safetensors"
    )
    assert torch.equal(model.backbone.state_dict()["conv1.weight"], state["conv1.weight"])

    # the offline path: a pre-filled cache answers with no server at all
    n = len(requests)
    offline = fetch(tmp_path / "again.safetensors", {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode == 0, offline.stderr
    assert len(requests) == n and (tmp_path / "again.safetensors").read_bytes() == (
        tmp_path / "resources" / "resnet50.safetensors").read_bytes()  # fmt: skip


def test_unreachable_hub_fails_fast_with_the_three_ways(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = fetch(tmp_path / "w.safetensors", env)
    assert result.returncode == 2
    assert (
        "resnet50" in result.stderr and "three ways" in result.stderr and "downloading timm/resnet50" in result.stderr
    )
    assert not (tmp_path / "w.safetensors").exists()
