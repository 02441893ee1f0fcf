"""Any timm image model as a pose backbone: one feature map at output stride 16, for frames of any size.

The paper's three families are built in `oodpose.models` as DeepLabCut built them. Every other row of
the backbone table (family ``timm``) comes through here, so that a ConvNeXt or a Vision Transformer
needs a table row and nothing else:

- models that take timm's ``output_stride`` (ConvNeXt, RegNet, EfficientNetV2, ...) dilate their
  last stage to reach 16;
- Vision Transformers give their last block's tokens, normalised and reshaped to a map (timm's
  ``forward_intermediates``), for frames of any size (``dynamic_img_size``; the position embedding
  is interpolated). A transformer with p-pixel patches (DINOv2's and EVA-02's 14) sees the canvas
  resized by p/16, so that each token covers 16 canvas pixels.

Frames are padded at the right and bottom to whole multiples of 16, so every model gives
ceil(H/16) x ceil(W/16) maps, as the paper's families do, and the head, targets, decoding and
target disk stay those of stride 16 (8 after the head): resizing a patch-14 transformer's input
keeps one geometry for every backbone, at the price of seeing the frame at 14/16 of its resolution.
A convolutional network at another stride that timm cannot dilate (MobileNetV3's 32) or a model
that needs a fixed input size (BEiT, Hiera, Swin) is refused by name.
"""

from __future__ import annotations

import functools
import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from oodpose.backbones import Backbone
from oodpose.errors import InputError

OUTPUT_STRIDE = 16
# How timm is asked for a stride-16 map, in order: dilation, then any-size transformer tokens, then as it is.
CREATE_OPTIONS = ({"output_stride": OUTPUT_STRIDE}, {"dynamic_img_size": True, "dynamic_img_pad": True}, {})
PROBE_SIZES = ((224, 224), (161, 287))  # (H, W): a square, and an odd frame that is not a multiple of 16


def create_timm_backbone(backbone: Backbone) -> nn.Module:
    """A randomly initialised timm model without classifier, asked for output stride 16 as it allows."""
    arch = backbone.timm_name
    for options in CREATE_OPTIONS:
        try:
            return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", **options)
        except TypeError as err:  # the model's constructor does not take that option
            if not any(name in str(err) for name in options):
                raise
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise InputError(f"backbone {backbone.name!r}: timm has no model {arch!r}") from err
            raise
    raise AssertionError("unreachable: the last option is no option")


def returns_tokens(model: nn.Module) -> bool:
    """A transformer's forward_features gives (B, N, C) tokens rather than a (B, C, H, W) map."""
    training = model.training
    with torch.no_grad():
        out = model.eval().forward_features(torch.zeros(1, 3, 64, 64, device=parameter_device(model)))
    model.train(training)
    return out.ndim == 3


def parameter_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def pad_to_stride(images: torch.Tensor) -> torch.Tensor:
    return F.pad(images, (0, -images.shape[-1] % OUTPUT_STRIDE, 0, -images.shape[-2] % OUTPUT_STRIDE))


def token_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last block's normalised tokens as a (B, C, H/16, W/16) map; H and W are multiples of 16."""
    patch = model.patch_embed.patch_size[0]
    if patch != OUTPUT_STRIDE:  # p-pixel patches: resize so that each token covers 16 canvas pixels
        size = tuple(n // OUTPUT_STRIDE * patch for n in images.shape[-2:])
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return model.forward_intermediates(images, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]


def map_sizes(model: nn.Module) -> list[tuple[int, int]]:
    """The (H, W) of the model's feature map for each probe frame, padded as PoseNet pads it."""
    tokens = returns_tokens(model)
    sizes = []
    for size in PROBE_SIZES:
        images = pad_to_stride(torch.zeros(1, 3, *size, device=parameter_device(model)))
        sizes.append(tuple((token_map(model, images) if tokens else model.forward_features(images)).shape[-2:]))
    return sizes


def check_known_to_timm(backbone: Backbone) -> None:
    """Refuse, naming the row, an architecture timm does not have, whatever the family: at config time, rather
    than as timm's traceback in a training job."""
    if not timm.is_model(backbone.timm_name):
        raise InputError(
            f"backbone {backbone.name!r}: timm has no model {backbone.timm_name!r} (the backbone table's timm_model, "
            "or the hub tag in weights); correct the row, e.g. against `timm.list_models()`"
        )


@functools.cache
def check_output_stride(backbone: Backbone) -> None:
    """Refuse, naming the model, a timm model that cannot give stride-16 maps for frames of any size.

    Built on the meta device: no weights are made or read, so the workflow checks every row of a study
    when it reads the config, in well under a second per model. Once per process: an evaluation builds
    a network for every learning-curve snapshot.
    """
    arch = backbone.timm_name
    with torch.device("meta"):
        model = create_timm_backbone(backbone).eval()
        try:
            sizes = map_sizes(model)
        except (AssertionError, RuntimeError, ValueError) as err:
            raise InputError(
                f"backbone {backbone.name!r}: timm model {arch!r} cannot take frames of any size "
                f"({type(err).__name__}: {str(err)[:160]}); oodpose trains on frames of many sizes, so choose a "
                "model that timm builds with output_stride or dynamic_img_size (e.g. ConvNeXt, RegNet, "
                "EfficientNetV2, or a ViT)"
            ) from err
    expected = [tuple(math.ceil(s / OUTPUT_STRIDE) for s in size) for size in PROBE_SIZES]
    if sizes != expected:
        stride = PROBE_SIZES[0][1] / sizes[0][1]
        raise InputError(
            f"backbone {backbone.name!r}: timm model {arch!r} gives feature maps at output stride {stride:.3g}, "
            f"and timm cannot set it to {OUTPUT_STRIDE} for this model; oodpose's head, targets and decoding need "
            f"stride {OUTPUT_STRIDE}, so choose a model that takes timm's output_stride (ConvNeXt, RegNet, "
            "EfficientNet, ResNet) or a Vision Transformer"
        )
