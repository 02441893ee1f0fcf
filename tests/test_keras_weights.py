"""The paper's MobileNetV2 weights: Keras's HDF5 layout converted onto timm computes what Keras computes, and
the download path works against a local server."""

from __future__ import annotations

import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from oodpose import keras_weights
from oodpose.backbones import get_backbone
from oodpose.models import build_model, fetch_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="keras (the dev extra) checks the conversion")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras's numpy 2 conversions
ALPHAS = {"mobilenetv2_035": 0.35, "mobilenetv2_050": 0.5, "mobilenetv2_075": 0.75, "mobilenetv2_100": 1.0}


def keras_file(alpha: float, folder: Path) -> tuple[Path, object]:
    """Keras's MobileNetV2 without top, random weights (statistics included), saved in the legacy HDF5 layout."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    model = keras.applications.MobileNetV2(alpha=alpha, include_top=False, weights=None, input_shape=(96, 96, 3))
    rng = np.random.default_rng(int(alpha * 100))
    model.set_weights(
        [
            rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
            if "variance" in v.path
            else rng.normal(0, 0.2, w.shape).astype(np.float32)
            for v, w in zip(model.weights, model.get_weights())
        ]
    )
    path = folder / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5"  # the published name
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path, model


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    folder = tmp_path_factory.mktemp("keras")
    return {name: keras_file(alpha, folder) for name, alpha in ALPHAS.items()}


@pytest.mark.parametrize("name", list(ALPHAS))
def test_converted_weights_compute_what_keras_computes(keras_files, name):
    path, model = keras_files[name]
    net = timm.create_model(name, num_classes=0, global_pool="", **keras_weights.TIMM_ARGS).eval()
    net.load_state_dict(keras_weights.convert(path))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    expected = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)))
    with torch.no_grad():
        got = net.forward_features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4


def test_the_pose_network_takes_the_keras_file(keras_files):
    path, _ = keras_files["mobilenetv2_035"]
    net = build_model(get_backbone("mobilenetv2_035"), 22, "imagenet", weights=path)
    converted = keras_weights.convert(path)
    assert torch.equal(net.backbone.conv_stem.weight, converted["conv_stem.weight"])
    assert torch.allclose(net.mean, torch.full((1, 3, 1, 1), 127.5)) and net.train_batchnorm  # [-1, 1] inputs


def test_fetch_weights_downloads_and_converts_from_a_mirror(keras_files, tmp_path, monkeypatch):
    path, _ = keras_files["mobilenetv2_075"]
    handler = partial(SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KERAS_WEIGHTS_URL", f"http://127.0.0.1:{httpd.server_port}/")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        dest = fetch_weights(get_backbone("mobilenetv2_075"), tmp_path / "resources" / "mobilenetv2_075.safetensors")
    finally:
        httpd.shutdown()
    fetched = load_file(str(dest))
    assert set(fetched) == set(keras_weights.convert(path))
    assert torch.equal(fetched["blocks.3.1.conv_dw.weight"], keras_weights.convert(path)["blocks.3.1.conv_dw.weight"])
    assert (tmp_path / "cache" / "oodpose" / "keras" / path.name).is_file()  # downloaded once, then cached
