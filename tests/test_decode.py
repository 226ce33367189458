"""Decoding decisions to arch.json."""

import json

import pytest

from spnas.arch.handoff import (
    ARCH_FORMAT,
    ArchError,
    choice_from_decisions,
    load_arch,
    make_arch,
    stage_strings,
    write_arch,
)
from spnas.latency import load_table
from spnas.models import get_arch
from spnas.space import SearchSpace, embedded_space, uniform_choices


def test_choice_from_decisions_no_swap():
    assert choice_from_decisions(1, 1, 1) == "k5_e6"
    assert choice_from_decisions(0, 1, 1) == "k3_e6"  # the release wrote 3x3-3 here
    assert choice_from_decisions(1, 0, 1) == "k5_e3"  # ... and 5x5-6 here
    assert choice_from_decisions(0, 0, 1) == "k3_e3"
    assert choice_from_decisions(1, 1, 0) == "skip"


def test_pixel1_stage_strings_match_timm():
    # timm spnasnet_100 arch_def.
    assert get_arch("spnas_pixel1").stages == (
        "ds_r1_k3_s1_c16_noskip", "ir_r3_k3_s2_e3_c24",
        "ir_r1_k5_s2_e6_c40", "ir_r3_k3_s1_e3_c40",
        "ir_r1_k5_s2_e6_c80", "ir_r3_k3_s1_e3_c80",
        "ir_r1_k5_s1_e6_c96", "ir_r3_k5_s1_e3_c96",
        "ir_r4_k5_s2_e6_c192", "ir_r1_k3_s1_e6_c320_noskip",
    )


def test_arch_json_round_trip(pixel1_table_path, tmp_path):
    table = load_table(pixel1_table_path)
    choices = list(get_arch("spnas_pixel1").choices)
    arch = make_arch(SearchSpace(), choices, table, config={"lambda_": 0.02})
    path = tmp_path / "arch.json"
    write_arch(str(path), arch)
    loaded = load_arch(str(path))
    assert loaded["format"] == ARCH_FORMAT
    assert len(loaded["layers"]) == 22 and loaded["layers"] == choices
    assert loaded["predicted_ms"] == pytest.approx(80.5926, abs=1e-4)
    assert loaded["latency_table"]["device"] == "Pixel 1"
    assert len(loaded["latency_table"]["sha256"]) == 64
    assert loaded["stages"] == list(get_arch("spnas_pixel1").stages)


def test_embedded_space_strings_with_skips():
    space = embedded_space()
    choices = uniform_choices(space, "k3_e3")
    choices[2] = choices[3] = "skip"
    strings = stage_strings(space, choices)
    assert strings[0] == "ds_r1_k3_s1_c8_noskip"
    assert strings[1] == "ir_r2_k3_s1_e3_c16"  # 4 layers, 2 skipped


@pytest.mark.parametrize(
    "content, message",
    [
        ({"format": "spnas.arch/2", "layers": [], "stages": []}, "format 'spnas.arch/2'"),
        ({"format": ARCH_FORMAT, "layers": []}, "lacks \\['stages'\\]"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_arch_files(tmp_path, content, message):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(content))
    with pytest.raises(ArchError, match=message):
        load_arch(str(p))


def test_invalid_choices_rejected():
    space = SearchSpace()
    choices = uniform_choices(space, "k5_e6")
    choices[1] = "skip"  # first layer of a block
    with pytest.raises(ValueError, match="cannot be skipped"):
        make_arch(space, choices)
    choices[1] = "k7_e6"
    with pytest.raises(ValueError, match="unknown choice 'k7_e6'"):
        make_arch(space, choices)
