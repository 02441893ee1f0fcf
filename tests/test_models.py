from dataclasses import replace

import pytest
import timm
import torch
from safetensors.torch import save_file

from oodpose.backbones import get_backbone, load_backbones
from oodpose.errors import InputError
from oodpose.models import build_model, create_backbone, hub_weights, weights_file
from oodpose.targets import make_targets, predict

FAMILIES = ["mobilenetv2_035", "resnet50", "efficientnet_lite0"]
GENERIC = ["convnext_atto", "vit_small_patch16", "eva02_small_patch14_mim"]  # dilated CNN, patch-16 and -14 ViTs
SIZES = [(162, 288), (161, 287)]  # (H, W): the synthetic frame, and an odd one


def test_table_has_the_paper_backbones_and_lite():
    table = load_backbones()
    paper = ["mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "resnet50", "resnet101"] + [
        f"efficientnet_b{i}" for i in range(7)
    ]
    assert set(paper + ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]) <= set(table)
    assert [table[f"efficientnet_b{i}"].imagenet_top1 for i in range(7)] == [77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0]
    assert table["resnet50"].weights == "timm:resnet50.tv_in1k"
    mobilenets = [table[f"mobilenetv2_{w}"] for w in ("035", "050", "075", "100")]
    assert [b.imagenet_top1 for b in mobilenets] == [60.3, 65.4, 69.8, 71.8]  # the paper's TensorFlow weights
    assert all(b.weights.startswith("keras:mobilenet_v2_weights_tf_dim_ordering_tf_kernels_") for b in mobilenets)
    assert table["mobilenetv2_100_timm"].weights == "timm:mobilenetv2_100.ra_in1k"  # timm's, to compare
    assert (table["resnet50"].pretrained_ilr, table["resnet50"].pretrained_final_lr) == (1e-4, 1e-5)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(InputError, match="unknown backbone 'resnet18'.*mobilenetv2_035.*efficientnet_b6"):
        get_backbone("resnet18")


def assert_round_trip(map_size: tuple[int, int], size: tuple[int, int]) -> None:
    """An encoded label decodes to within 0.5 px on maps of `map_size` for a frame of `size`."""
    keypoints = torch.tensor([[[3.3, 4.1], [size[1] - 1.2, size[0] - 0.7], [140.6, 80.25], [float("nan")] * 2]])
    target, loc, _ = make_targets(keypoints, map_size)
    decoded = predict(torch.where(target > 0, 5.0, -5.0), loc)
    assert torch.allclose(decoded[0, :3, :2], keypoints[0, :3], atol=0.5)
    assert target[0, 3].sum() == 0


@pytest.mark.parametrize("name", FAMILIES + GENERIC)
@pytest.mark.parametrize("size", SIZES)
def test_output_shapes_and_round_trip(name, size):
    model = build_model(get_backbone(name), 22, "scratch").eval()
    with torch.no_grad():
        scoremap, locref = model(torch.zeros(1, 3, *size, dtype=torch.uint8))
        features = model.features(torch.zeros(1, 3, *size))
    assert scoremap.shape[-2:] == tuple(2 * s for s in features.shape[-2:])  # head exactly doubles
    assert features.shape[-2] == -(-size[0] // 16) and scoremap.shape[1] == 22 and locref.shape[1] == 44
    if name in ("mobilenetv2_035", "efficientnet_lite0"):
        assert model.backbone.num_features == 1280 or name.startswith("efficientnet")
    assert_round_trip(tuple(scoremap.shape[-2:]), size)


@pytest.mark.parametrize("name", list(load_backbones()))
def test_every_row_gives_stride_8_maps_for_any_frame(name):
    """Every row of the table, built on the meta device (shapes only, no weights): stride-8 maps, labels decode."""
    with torch.device("meta"):
        model = build_model(get_backbone(name), 22, "scratch").eval()
        maps = [model(torch.zeros(1, 3, *size, dtype=torch.uint8))[0].shape[-2:] for size in SIZES]
    for size, map_size in zip(SIZES, maps):
        assert tuple(map_size) == tuple(2 * -(-s // 16) for s in size)
        assert_round_trip(tuple(map_size), size)


@pytest.mark.parametrize(
    "model, why",
    [
        ("mobilenetv3_large_100", "gives feature maps at output stride 32, and timm cannot set it to 16"),
        ("swin_tiny_patch4_window7_224", "cannot take frames of any size"),
        ("no_such_model", "timm has no model 'no_such_model'"),
    ],
)
def test_a_model_that_cannot_reach_stride_16_is_refused_by_name(model, why):
    row = replace(get_backbone("convnext_atto"), name="mine", timm_model=model, weights="none")
    with pytest.raises(InputError, match=f"backbone 'mine'.*{why}"):
        build_model(row, 22, "scratch")


def test_a_patch_14_transformer_sees_the_canvas_resized_so_a_token_covers_16_pixels(monkeypatch):
    model = build_model(get_backbone("eva02_small_patch14_mim"), 22, "scratch").eval()
    seen = []
    monkeypatch.setattr(
        model.backbone.patch_embed,
        "forward",
        lambda x, f=model.backbone.patch_embed.forward: seen.append(tuple(x.shape[-2:])) or f(x),
    )
    with torch.no_grad():
        scoremap = model(torch.zeros(1, 3, 161, 287, dtype=torch.uint8))[0]
    assert seen == [(11 * 14, 18 * 14)] and tuple(scoremap.shape[-2:]) == (22, 36)  # padded to 176x288, x14/16


def test_a_hub_file_of_any_timm_model_loads_by_name(tmp_path):
    """The hub's files keep their classifier; a generic backbone takes its own tensors by name."""
    state = timm.create_model("vit_small_patch16_224").state_dict()
    save_file(state, str(tmp_path / "model.safetensors"))
    model = build_model(get_backbone("vit_small_patch16"), 22, "imagenet", weights=tmp_path / "model.safetensors")
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.tokens and abs(float(model.mean.flatten()[0]) - 127.5) < 1e-3  # the tag's own normalisation


def test_mobilenet_keeps_1280_head_and_efficientnet_drops_it():
    mobile = create_backbone(get_backbone("mobilenetv2_035"))
    assert mobile.conv_head.out_channels == 1280
    eff = create_backbone(get_backbone("efficientnet_lite0"))
    assert isinstance(eff.conv_head, torch.nn.Identity)
    assert eff.forward_features(torch.zeros(1, 3, 64, 64)).shape[1] == 320


def test_lite_package_weights_really_load():
    backbone = get_backbone("efficientnet_lite0")
    state = torch.load(weights_file(backbone), map_location="cpu")
    model = build_model(backbone, 22, "imagenet")
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["conv_stem.weight"], state["_conv_stem.weight"])
    assert torch.equal(loaded["blocks.6.0.conv_pwl.weight"], state["_blocks.15._project_conv.weight"])
    assert abs(float(model.mean.flatten()[0]) - 127.5) < 1e-3  # Lite weights expect inputs in [-1, 1]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_user_weights_file_loads_for_a_backbone_without_timm_weights(tmp_path, suffix):
    backbone = get_backbone("mobilenetv2_035")
    source = create_backbone(backbone)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = build_model(backbone, 22, "imagenet", weights=path, seed=123)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_missing_weights_explain_three_ways(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="mobilenetv2_035.*three ways.*--weights.*HF_HUB_OFFLINE.*EfficientNet-Lite"):
        build_model(get_backbone("mobilenetv2_035"), 22, "imagenet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="resnet50.*not in the Hugging Face cache"):
        hub_weights(get_backbone("resnet50"), "resnet50.tv_in1k", cache_dir=tmp_path)


def test_mismatching_weights_name_the_key_and_shapes(tmp_path):
    backbone = get_backbone("mobilenetv2_035")
    state = create_backbone(backbone).state_dict()
    state["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        InputError, match=r"'conv_stem.weight' has shape \(8, 3, 3, 3\) in the file but \(16, 3, 3, 3\)"
    ):
        build_model(backbone, 22, "imagenet", weights=tmp_path / "bad.pth")
    with pytest.raises(InputError, match="does not exist"):
        build_model(backbone, 22, "imagenet", weights=tmp_path / "none.pth")


@pytest.mark.parametrize(
    "backbone, trains_statistics",
    [("mobilenetv2_035", True), ("resnet50", False), ("efficientnet_lite0", False), ("regnety_008", False)],
)
def test_batchnorm_statistics_train_for_mobilenetv2_only(backbone, trains_statistics):
    """DeepLabCut trains MobileNetV2's batch norm (the paper says so); ResNets and EfficientNets keep theirs."""
    model = build_model(get_backbone(backbone), 22, "scratch").train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [m.running_mean.clone() for m in norms]
    assert model.training and all(m.training == trains_statistics for m in norms)
    for _ in range(3):
        model(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8))[0].sum().backward()
    moved = [not torch.equal(m.running_mean, b) for m, b in zip(norms, before)]
    assert all(moved) if trains_statistics else not any(moved)
    model.eval()
    assert not any(m.training for m in norms)  # evaluation uses the running statistics
    assert norms[0].weight.grad is not None  # scale and shift learn in every family
