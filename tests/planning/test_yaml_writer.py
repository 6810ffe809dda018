"""The planned pipeline YAML: comments with reasons, exact round trip, loadable by load_pipeline."""

from __future__ import annotations

import pytest
import yaml

from medseg.config import load_pipeline
from medseg.config.schema import PipelineConfig
from medseg.planning.planner import plan_pipeline
from medseg.planning.yaml_writer import render_yaml
from tests.planning.synthetic import make_fingerprint
from tests.planning.test_rules import aniso_ct, em2d, hippo

FINGERPRINTS = {
    "hippocampus": hippo,
    "anisotropic_ct": aniso_ct,
    "em2d": em2d,
    "mixed": lambda: make_fingerprint(
        name='odd: "name" # with # hashes', modality=None, channels=(("ct", "ct"), ("t2 w", "mr")), n_cases=2
    ),
}


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_yaml_round_trips_and_loads(name, tmp_path):
    manifest = tmp_path / "my data" / "dataset: v1.json"  # absolute, with a space and a colon
    result = plan_pipeline(FINGERPRINTS[name](), 20, manifest_path=str(manifest))
    for r in result.configurations:
        text = render_yaml(r)
        assert yaml.safe_load(text) == r.config
        path = tmp_path / "elsewhere" / f"{r.kind}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        loaded = load_pipeline(path)
        assert loaded.data.manifest == str(manifest)
        assert loaded.model_dump() == PipelineConfig.model_validate(r.config).model_dump()


def _comment_above(text: str, key_line: str) -> str:
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line == key_line)
    block = []
    while i > 0 and lines[i - 1].lstrip().startswith("#"):
        i -= 1
        block.insert(0, lines[i].strip()[2:])
    return " ".join(block)


def test_each_planned_key_has_its_reason_and_evidence_above_it():
    result = plan_pipeline(hippo(), 28)
    text = render_yaml(result)
    flips = _comment_above(text, "  flip_axes: [0]")
    assert "mirror left-right only" in flips and "[modality MR, no class lateralised]" in flips
    patch = _comment_above(text, "  patch_size: [40, 56, 40]")
    assert "median shape after resampling" in patch and "median shape 36 x 50 x 35" in patch
    feats = _comment_above(text, "    features: [16, 32, 64, 128]")
    assert "4 levels" in feats
    for d in result.decisions:  # every decision's reason is in the comments, wrapped or not
        assert " ".join(d.reason.split()).rstrip(".") in " ".join(
            line.strip()[2:] for line in text.splitlines() if line.lstrip().startswith("#")
        ), d.key
    assert all(len(line) <= 100 for line in text.splitlines() if line.lstrip().startswith("#"))


def test_warnings_and_alternatives_are_written_as_comments():
    result = plan_pipeline(aniso_ct(n_cases=3), 20)
    text = render_yaml(result)
    head = text.split("\nname:")[0]
    assert "# WARNING: 3 labelled cases, fewer than the 5 folds" in head
    assert "Also proposed: 2D (abdomen_2d); cross-validation picks" in head
    assert "Also proposed" not in render_yaml(result.alternatives[0])
