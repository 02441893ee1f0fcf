"""Fetching timm weights through the Hugging Face hub protocol, against a local server standing in for the hub."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file, save_file
from test_workflow import REPO, planned_outputs, snakemake

from oodpose.backbones import get_backbone
from oodpose.models import build_model, create_backbone

HUB_FILES = {  # backbone: (hub path, a tensor to compare after loading)
    "resnet50": ("/timm/resnet50.tv_in1k/resolve/main/model.safetensors", "conv1.weight"),
    "convnext_atto": ("/timm/convnext_atto.d2_in1k/resolve/main/model.safetensors", "stem.0.weight"),  # any timm model
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A loopback HTTP server serving the backbones' timm/<tag>/model.safetensors as the hub does.

    The ConvNeXt file keeps its classifier, as the hub's files do; the model takes what it needs by name.
    """
    states = {
        "resnet50": create_backbone(get_backbone("resnet50")).state_dict(),
        "convnext_atto": timm.create_model("convnext_atto").state_dict(),
    }
    payloads = {}
    for name, state in states.items():
        path = tmp_path_factory.mktemp("hub") / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        payloads[HUB_FILES[name][0]] = path.read_bytes()
    requests = []

    class Hub(BaseHTTPRequestHandler):
        def _head(self) -> bool:
            requests.append((self.command, self.path))
            payload = payloads.get(self.path)
            if payload is None:
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
                self.wfile.write(payloads[self.path])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", states, requests
    server.shutdown()


def fetch(out: Path, env: dict, backbone: str = "resnet50") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "oodpose", "fetch-weights", backbone, str(out)]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backbone", list(HUB_FILES))
def test_fetch_from_the_hub_then_train_offline(hub, tmp_path, backbone):
    endpoint, states, requests = hub
    (hub_path, key), state, fetched_file = HUB_FILES[backbone], states[backbone], tmp_path / f"{backbone}.safetensors"
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = fetch(fetched_file, env, backbone)
    assert result.returncode == 0, result.stderr
    assert ("GET", hub_path) in requests
    fetched = load_file(str(fetched_file))
    assert all(torch.equal(fetched[k], v) for k, v in state.items())
    model = build_model(get_backbone(backbone), 22, "imagenet", weights=fetched_file)
    assert torch.equal(model.backbone.state_dict()[key], state[key])

    # the offline path: a pre-filled cache answers with no server at all
    n = len(requests)
    offline_env = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    offline = fetch(tmp_path / "again.safetensors", offline_env, backbone)
    assert offline.returncode == 0, offline.stderr
    assert len(requests) == n and (tmp_path / "again.safetensors").read_bytes() == fetched_file.read_bytes()


def test_unreachable_hub_fails_fast_with_the_three_ways(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = fetch(tmp_path / "w.safetensors", env)
    assert result.returncode == 2
    assert (
        "resnet50" in result.stderr and "three ways" in result.stderr and "downloading timm/resnet50" in result.stderr
    )
    assert not (tmp_path / "w.safetensors").exists()


def test_a_new_weight_source_fetches_again_and_a_copied_table_does_not(hub, tmp_path):
    """fetch_weights depends on its row's weight source, not on the table's path: before, a table edited to
    another hub tag kept the old tag's file (and trained from it), and a copy of the table fetched again."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    table = pd.read_csv(tmp_path / "config" / "backbones.tsv", sep="\t", keep_default_na=False)
    config = yaml.safe_load((tmp_path / "config" / "test.yaml").read_text())
    target = "resources/weights/resnet50.safetensors"

    def plan(table_name: str) -> set[str]:
        (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config | {"backbones_table": table_name}))
        return planned_outputs(snakemake(tmp_path, target, "-n", "--configfile", "mine.yaml").stdout, ".safetensors")

    table.to_csv(tmp_path / "mine.tsv", sep="\t", index=False)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config | {"backbones_table": "mine.tsv"}))
    env = {"HF_ENDPOINT": hub[0], "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        snakemake(tmp_path, target, "--cores", "1", "--configfile", "mine.yaml")
    assert (tmp_path / target).is_file()

    shutil.copyfile(tmp_path / "mine.tsv", tmp_path / "copy.tsv")
    assert not plan("copy.tsv")
    table.loc[table["name"] == "resnet50", "weights"] = "timm:resnet50.a1_in1k"
    table.to_csv(tmp_path / "mine.tsv", sep="\t", index=False)
    assert plan("mine.tsv") == {target}
