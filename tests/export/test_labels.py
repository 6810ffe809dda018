"""Labels files and the built-in SNOMED CT table."""

from __future__ import annotations

import json

import pytest
from pydicom.sr.codedict import codes

from medseg.errors import ConfigError, InputNotFoundError
from medseg.labels import TABLE_PATH, LabelSet, load_labels, lookup_builtin


def _sct_meanings() -> dict[str, set[str]]:
    """Every SNOMED CT code pydicom ships, with all the meanings it gives it."""
    from pydicom.sr._concepts_dict import concepts

    out: dict[str, set[str]] = {}
    for entry in concepts["SCT"].values():
        for value, (meaning, _cids) in entry.items():
            out.setdefault(value, set()).add(meaning)
    return out


def test_builtin_table_codes_are_pydicoms_snomed_codes():
    table = json.loads(TABLE_PATH.read_text())
    known = _sct_meanings()
    codes_in_table = [e["type"] for e in table["entries"]]
    codes_in_table += list(table["categories"].values()) + list(table["modifiers"].values())
    codes_in_table.append(table["generic_type"])
    assert len(table["entries"]) >= 100
    for code in codes_in_table:
        assert code["scheme"] == "SCT"
        assert code["value"] in known, code
        assert code["meaning"] in known[code["value"]], code
    names = {e["name"] for e in table["entries"]}
    for required in ("liver", "spleen", "kidney", "pancreas", "lung", "heart", "aorta", "urinary bladder"):
        assert required in names
    for required in ("prostate", "brain", "hippocampus", "neoplasm", "lesion"):
        assert required in names


@pytest.mark.parametrize(
    ("name", "category", "type_code", "modifier"),
    [
        ("liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver, None),
        ("Kidney_Left", codes.SCT.AnatomicalStructure, codes.SCT.Kidney, codes.SCT.Left),
        ("adrenal_gland_right", codes.SCT.AnatomicalStructure, codes.SCT.AdrenalGland, codes.SCT.Right),
        ("rib_left_6", codes.SCT.AnatomicalStructure, codes.SCT.Rib, codes.SCT.Left),
        ("vertebrae_T12", codes.SCT.AnatomicalStructure, codes.SCT.T12Vertebra, None),
        ("tumour", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, None),
        ("Lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, None),
        ("urinary_bladder", codes.SCT.AnatomicalStructure, codes.SCT.Bladder, None),
        ("hippocampus", codes.SCT.AnatomicalStructure, codes.SCT.Hippocampus, None),
        ("left atrium", codes.SCT.AnatomicalStructure, codes.SCT.LeftAtrium, None),
    ],
)
def test_names_resolve_to_snomed_codes(name, category, type_code, modifier):
    found = lookup_builtin(name)
    assert found is not None
    assert (found["category"].value, found["category"].meaning) == (category.value, category.meaning)
    assert found["type"].value == type_code.value
    if modifier is None:
        assert found.get("modifier") is None
    else:
        assert found["modifier"].value == modifier.value


def test_short_form_fills_codes_colours_and_notes_unknown_names():
    labels = load_labels({"0": "background", "1": "liver", "2": "kidney_left", "7": "gizmo"})
    assert labels.indices == [1, 2, 7]
    liver, kidney, gizmo = labels.labels
    assert liver.type.value == codes.SCT.Liver.value and liver.note is None
    assert kidney.modifier.value == codes.SCT.Left.value
    assert gizmo.type.value == codes.SCT.Tissue.value and gizmo.category.value == codes.SCT.Tissue.value
    assert "gizmo" in gizmo.note and "Tissue" in gizmo.note
    assert liver.color != gizmo.color and all(0 <= c <= 255 for c in gizmo.color)
    assert liver.rt_type == "ORGAN"


def test_full_form_keeps_user_codes_and_yaml_works(tmp_path):
    spec = {
        "labels": [
            {
                "index": 5,
                "name": "GTV primary",
                "color": [250, 10, 10],
                "category": {"value": "49755003", "meaning": "Morphologically Abnormal Structure"},
                "type": {"value": "108369006", "meaning": "Neoplasm"},
                "rt_type": "gtv",
            }
        ]
    }
    path = tmp_path / "labels.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    label = load_labels(path).labels[0]
    assert (label.index, label.name, label.color, label.rt_type) == (5, "GTV primary", (250, 10, 10), "GTV")
    assert label.type.value == "108369006" and label.category.scheme == "SCT" and label.note is None
    assert load_labels(spec["labels"]).labels[0].name == "GTV primary"  # a bare list works too


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"labels": [{"index": 1, "name": "a", "colour": [1, 2, 3]}]}, "colour"),  # extra key forbidden
        ({"labels": [{"index": 1, "name": "a", "color": [1, 2, 300]}]}, "0-255"),
        ({"labels": [{"index": 1, "name": "a"}, {"index": 1, "name": "b"}]}, "named twice"),
        ({"labels": [{"index": 1, "name": "Liver"}, {"index": 2, "name": "liver"}]}, "share the name"),
        ({"labels": [{"index": 0, "name": "a"}]}, "index"),
        ({"labels": [{"index": 1, "name": "a", "type": {"value": "1", "meaning": "x"}}]}, "category"),
        ({"labels": [{"index": 1, "name": "a", "rt_type": "TUMOUR"}]}, "rt_type"),
        ({"liver": "x"}, "not a label value"),
        ({"1": [1, 2]}, "region"),
        ({"labels": [], "extra": 1}, "unknown key"),
    ],
)
def test_invalid_labels_are_config_errors(data, needle):
    with pytest.raises(ConfigError) as info:
        load_labels(data)
    assert needle in str(info.value)


def test_missing_or_unparsable_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        load_labels(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_labels(bad)


def test_find_by_name_ignores_case_and_separators():
    labels = LabelSet(labels=[{"index": 3, "name": "Kidney_Left"}])
    assert labels.find("kidney left").index == 3
    assert labels.find("KIDNEY-LEFT").index == 3
    assert labels.find("kidney right") is None


def test_one_parser_reads_every_labels_form(tmp_path):
    """Inline, id lists, MSD and nnU-Net dataset descriptions and the short form give one LabelSet."""
    expected = {1: "liver", 2: "spleen"}
    msd = tmp_path / "dataset.json"
    msd.write_text('{"name": "x", "labels": {"0": "background", "1": "liver", "2": "spleen"}}')
    forms = ["1:liver, 2:spleen", {"liver": 1, "spleen": 2, "background": 0}, msd, str(msd)]
    for form in forms:
        labels = load_labels(form)
        assert {label.index: label.name for label in labels.labels} == expected, form
    assert load_labels({"liver": 1}).labels[0].type.value == codes.SCT.Liver.value  # coded like files
    assert [label.name for label in load_labels([2, 0, 1]).labels] == ["label_1", "label_2"]
