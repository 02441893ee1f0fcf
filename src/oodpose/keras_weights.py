"""The paper's MobileNetV2 ImageNet weights: TensorFlow's, as Keras Applications publishes them, on timm's network.

The paper fine-tuned TensorFlow's MobileNetV2 checkpoints (ImageNet top-1: 0.35 60.3, 0.5 65.4,
0.75 69.8, 1.0 71.8). Keras Applications publishes them, converted from those TF-slim checkpoints,
as ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_<alpha>_224_no_top.h5``: legacy Keras HDF5,
one group per layer with ``kernel``, ``depthwise_kernel``, ``gamma``, ``beta``, ``moving_mean`` and
``moving_variance`` (``:0``-suffixed in Keras 2 files). This module maps such a file onto timm's
``mobilenetv2_*`` built to compute as TensorFlow does ('same' padding, batch-norm eps 1e-3, inputs
scaled to [-1, 1]); `tests/test_keras_weights.py` checks the features agree with Keras's own.
Read with h5py alone: no TensorFlow needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from oodpose.errors import InputError

# Keras Applications' own download location (keras/src/applications/mobilenet_v2.py: BASE_WEIGHT_PATH);
# KERAS_WEIGHTS_URL points at a mirror.
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
TIMM_ARGS = {"pad_type": "same", "bn_eps": 1e-3}  # TensorFlow's padding and batch-norm epsilon
MEAN = STD = (0.5, 0.5, 0.5)  # the weights' input normalisation: pixels / 127.5 - 1
STAGE_SIZES = (2, 3, 4, 3, 3, 1)  # Keras block_1 .. block_16, by timm stage 1 .. 6
BATCH_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def weights_url(file_name: str) -> str:
    return os.environ.get("KERAS_WEIGHTS_URL", KERAS_BASE_URL).rstrip("/") + "/" + file_name


def layer_map() -> dict[str, str]:
    """Keras layer name -> timm module path, for every layer that holds weights."""
    names = {
        "Conv1": "conv_stem",
        "bn_Conv1": "bn1",
        "Conv_1": "conv_head",
        "Conv_1_bn": "bn2",
        "expanded_conv_depthwise": "blocks.0.0.conv_dw",
        "expanded_conv_depthwise_BN": "blocks.0.0.bn1",
        "expanded_conv_project": "blocks.0.0.conv_pw",
        "expanded_conv_project_BN": "blocks.0.0.bn2",
    }
    block = 1
    for stage, size in enumerate(STAGE_SIZES, start=1):
        for index in range(size):
            prefix = f"blocks.{stage}.{index}"
            for keras_part, conv, bn in (
                ("expand", "conv_pw", "bn1"),
                ("depthwise", "conv_dw", "bn2"),
                ("project", "conv_pwl", "bn3"),
            ):
                names[f"block_{block}_{keras_part}"] = f"{prefix}.{conv}"
                names[f"block_{block}_{keras_part}_BN"] = f"{prefix}.{bn}"
            block += 1
    return names


def read_keras_h5(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Per layer, its weights by short name (``kernel``, ``gamma``, ...), from a legacy Keras HDF5 file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            layers = {}
            for layer in (n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]):
                group = root[layer]
                names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
                layers[layer] = {n.split("/")[-1].removesuffix(":0"): np.asarray(group[n]) for n in names}
            return layers
    except (OSError, KeyError) as err:
        raise InputError(f"{path}: not a Keras HDF5 weights file ({type(err).__name__}: {err})") from err


def convert(path: str | Path) -> dict[str, torch.Tensor]:
    """A Keras MobileNetV2 (include_top=False) weights file as a state dict of timm's ``mobilenetv2_*``."""
    modules = layer_map()
    layers = {name: weights for name, weights in read_keras_h5(path).items() if weights}  # not activations etc.
    missing = sorted(set(modules) - set(layers))
    if missing:
        raise InputError(f"{path}: Keras MobileNetV2 layers missing from the file: {missing[:5]}")
    state = {}
    for layer, weights in layers.items():
        if layer not in modules:
            raise InputError(f"{path}: layer {layer!r} is not a layer of Keras's MobileNetV2 without top")
        module = modules[layer]
        kernel = weights.get("depthwise_kernel", weights.get("kernel"))  # Keras 3 calls both `kernel`
        if kernel is not None:  # depthwise (h, w, c, 1) -> (c, 1, h, w); else (h, w, in, out) -> (out, in, h, w)
            state[f"{module}.weight"] = kernel.transpose((2, 3, 0, 1) if module.endswith("conv_dw") else (3, 2, 0, 1))
        else:
            state |= {f"{module}.{BATCH_NORM[k]}": v for k, v in weights.items()}
            state[f"{module}.num_batches_tracked"] = np.array(0)
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in state.items()}
