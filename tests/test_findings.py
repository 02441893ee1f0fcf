"""The findings report: hand-made metric tables whose outcome is known give each verdict."""

import numpy as np
import pandas as pd
import pytest

from oodpose import paper
from oodpose.aggregate import with_backbones
from oodpose.findings import CONTRADICTED, SUPPORTED, UNRESOLVED, findings, findings_markdown

BACKBONES = {"net_a": 70.0, "net_b": 75.0, "net_c": 80.0, "net_d": 85.0}


def metrics_table(
    error, backbones=BACKBONES, splits=(1, 2, 3), iterations=(100, 200), fraction=50, pck=None, families=None
):
    """A long metrics table; `error(backbone, top1, init, set, split, iteration)` gives each normalised error;
    `families`, each backbone's family (default 'x')."""
    rng = np.random.default_rng(0)
    rows = []
    for backbone, top1 in backbones.items():
        for init in ("imagenet", "scratch"):
            for split in splits:
                for set_ in ("test_within", "test_ood"):
                    for iteration in iterations:
                        value = error(backbone, top1, init, set_, split, iteration) + rng.normal(0, 1e-3)
                        rows.append(
                            dict(
                                dataset="horse",
                                backbone=backbone,
                                init=init,
                                split=split,
                                fraction=fraction,
                                set=set_,
                                iteration=iteration,
                                bodypart="all",
                                normalised_error=value,
                                pck=pck(backbone, set_) if pck else 1 - value,
                            )
                        )
    families = families or {}
    top1 = [
        dict(backbone=b, imagenet_top1=t, family=families.get(b, "x"), backbones="paper") for b, t in backbones.items()
    ]
    return with_backbones(pd.DataFrame(rows), top1)


def paper_like(backbone, top1, init, set_, split, iteration):
    """Pretrained beats scratch, more so OOD; OOD error falls steeply with top-1; scratch OOD rises late."""
    ood = set_ == "test_ood"
    if init == "imagenet":
        return (0.1 - 0.002 * (top1 - 70)) + ood * (0.4 - 0.01 * (top1 - 70)) + 0.01 * split
    late = iteration == 200
    return 0.3 - 0.1 * late + ood * (0.6 + 0.2 * late) + 0.01 * split


def verdicts(table: pd.DataFrame, horse10: bool = False) -> dict:
    found = findings(table, horse10)
    return {(r.claim, r.scope): r.verdict for r in found.itertuples()}


def test_a_paper_like_study_supports_every_claim():
    got = verdicts(metrics_table(paper_like))
    for claim in ("a", "b", "c", "d0", "d1", "d2", "d3"):
        assert got[(claim, "pooled")] == SUPPORTED, claim
    assert all(got[("a", b)] == SUPPORTED for b in BACKBONES)  # per backbone, paired across 3 splits
    assert got[("e", "pooled")] == UNRESOLVED  # the dataset is not Horse-10


def test_the_opposite_study_contradicts_them():
    def opposite(backbone, top1, init, set_, split, iteration):
        ood = set_ == "test_ood"
        if init == "scratch":  # scratch wins, more so OOD; scratch OOD keeps falling faster than within
            late = iteration == 200
            return 0.2 + ood * (0.2 - 0.15 * late) - 0.01 * late + 0.01 * split
        return 0.4 + 0.002 * (top1 - 70) + ood * (0.4 + 0.01 * (top1 - 70)) + 0.01 * split  # rises with top-1

    got = verdicts(metrics_table(opposite))
    for claim in ("a", "b", "c", "d0", "d1", "d2", "d3"):
        assert got[(claim, "pooled")] == CONTRADICTED, claim


LIGHT_AND_STRONG = {"mnv2_a": 60.0, "mnv2_b": 62.0, "mnv2_c": 64.0, "resnet": 80.0, "effnet_a": 82.0, "effnet_b": 84.0}
FAMILIES = {"mnv2_a": "mobilenetv2", "mnv2_b": "mobilenetv2", "mnv2_c": "mobilenetv2", "resnet": "resnet"}
FAMILIES |= {"effnet_a": "efficientnet", "effnet_b": "efficientnet"}


def test_a_larger_ood_advantage_for_resnets_and_efficientnets_than_for_mobilenetv2s():
    """(i): in `paper_like` the pretrained OOD error falls with ImageNet top-1 and scratch's does not, so the gap is
    larger for the stronger families; reversed, the MobileNetV2s gain more."""

    def reversed_gain(backbone, top1, init, set_, split, iteration):
        return paper_like(backbone, 155 - top1, init, set_, split, iteration)

    def study(error, families=FAMILIES):
        return metrics_table(error, backbones=LIGHT_AND_STRONG, families=families)

    assert verdicts(study(paper_like))[("i", "pooled")] == SUPPORTED
    assert verdicts(study(reversed_gain))[("i", "pooled")] == CONTRADICTED
    one_mobilenet = FAMILIES | {"mnv2_a": "resnet", "mnv2_b": "timm"}  # a timm row counts on neither side
    found = findings(study(paper_like, one_mobilenet), horse10=False).set_index("claim")
    assert found.loc["i", "verdict"] == UNRESOLVED and found.loc["i", "statistic"].startswith("not testable: needs")
    assert verdicts(study(paper_like, {}))[("i", "pooled")] == UNRESOLVED  # no family of the claim


@pytest.mark.parametrize("scratch_within_at_5, expected", [(0.6, SUPPORTED), (0.1, CONTRADICTED)])
def test_the_within_domain_advantage_against_training_data_is_checked_once_at_the_smallest_fraction(
    scratch_within_at_5, expected
):
    """(j): the within-domain gap at 5 % minus at 50 %, paired per backbone and split (scratch within at 50 %: 0.2
    at iteration 200, pretrained about 0.1)."""

    def less_data(backbone, top1, init, set_, split, iteration):
        within_scratch = init == "scratch" and set_ == "test_within" and iteration == 200
        return (
            scratch_within_at_5 + 0.01 * split
            if within_scratch
            else paper_like(backbone, top1, init, set_, split, iteration)
        )

    study = pd.concat([metrics_table(less_data, fraction=5), metrics_table(paper_like, fraction=50)])
    found = findings(study, horse10=False)
    rows = found[found["claim"] == "j"]
    assert rows["fraction"].tolist() == [5] and rows["verdict"].tolist() == [expected]
    assert (
        rows["statistic"]
        .iloc[0]
        .startswith("(scratch - pretrained) within-domain normalised error at 5 % minus at 50 %")
    )
    alone = findings(metrics_table(paper_like), horse10=False).set_index("claim")
    assert alone.loc["j", "statistic"].startswith("not testable: needs both inits evaluated within domain at 2 or more")


def test_what_the_design_cannot_test_is_not_resolvable():
    one_backbone = metrics_table(paper_like, backbones={"net_a": 70.0}, splits=(1,), iterations=(200,))
    got = verdicts(one_backbone)
    assert got[("a", "net_a")] == UNRESOLVED  # one split: no interval
    assert got[("a", "pooled")] == UNRESOLVED
    assert got[("c", "pooled")] == UNRESOLVED  # a single curve point
    assert all(got[(claim, "pooled")] == UNRESOLVED for claim in ("d0", "d1", "d2", "d3"))  # one backbone
    pretrained_only = metrics_table(paper_like)
    pretrained_only = pretrained_only[pretrained_only["init"] == "imagenet"]
    assert verdicts(pretrained_only)[("a", "pooled")] == verdicts(pretrained_only)[("d3", "pooled")] == UNRESOLVED


def test_noise_larger_than_the_effect_is_not_resolvable():
    def noisy(backbone, top1, init, set_, split, iteration):
        return 0.5 + 0.3 * ((split + len(backbone) * (init == "scratch")) % 3 - 1) * (1 if split != 2 else -1)

    got = verdicts(metrics_table(noisy))
    assert got[("a", "pooled")] == UNRESOLVED
    assert got[("d1", "pooled")] == UNRESOLVED


@pytest.mark.parametrize("offset, expected", [(0.5, SUPPORTED), (-20.0, CONTRADICTED)])
def test_table1_against_the_paper_on_horse10(offset, expected):
    published = {b: paper.TABLE1[b] for b in ("mobilenetv2_035", "resnet50", "efficientnet_b0", "efficientnet_b6")}

    def pck(backbone, set_):
        return (published[backbone][set_ == "test_ood"] + offset + (hash(backbone) % 3) * 0.1) / 100

    table = metrics_table(paper_like, backbones={b: 70.0 + i for i, b in enumerate(published)}, pck=pck)
    got = verdicts(table, horse10=True)
    assert got[("e", "test_within")] == got[("e", "test_ood")] == expected


def test_findings_markdown_states_every_claim_with_its_verdict():
    schedules = pd.DataFrame([{"schedule_source": "table (paper, cross-validated)"}])
    text = findings_markdown(findings(metrics_table(paper_like), horse10=False), schedules, pd.DataFrame())
    assert "Learning schedules: table (paper, cross-validated)." in text and "oracle" not in text
    assert "## horse, 50 % training data" in text
    for claim in ("(a)", "(b)", "(c)", "(d0)", "(d1)", "(d2)", "(d3)", "(e)", "(i)", "(j)"):
        assert claim in text
    assert "**supported**" in text and "**not resolvable at this n**" in text
    assert "(a) net_c" in text  # the per-backbone tests


def test_the_docs_list_every_claim_as_the_code_states_it():
    from pathlib import Path

    from oodpose.findings import CLAIMS

    page = (Path(__file__).resolve().parents[1] / "docs" / "findings.md").read_text()
    for claim in CLAIMS:
        assert f"| ({claim.id}) | {claim.statement} |" in page and f"| {claim.unit} | {claim.needs} |" in page
