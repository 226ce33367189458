"""Plain ConvNet builder and architecture registry (spnas.models).

Golden parameter counts are trainable parameters at 1000 classes (convs
without bias, BN gamma/beta, FC with bias), the convention of timm and
torchvision; Keras' ``count_params()`` also counts BN moving statistics.
"""

import json

import keras
import numpy as np
import pytest

from spnas.arch.handoff import ArchError, make_arch, write_arch
from spnas.arch.plan import ArchitectureError, plan_model
from spnas.arch.registry import UnknownArchError
from spnas.arch.stages import StageSpec, decode, decode_all, encode
from spnas.choices import parse_choice
from spnas.models import build_model, count_params, get_arch, list_archs
from spnas.space import SKIP, SearchSpace, embedded_space, uniform_choices

# name -> golden count. Source / derivation of each figure:
GOLDEN = {
    # timm spnasnet_100 (the paper's Pixel 1 net, Fig. 5): 4,421,616.
    "spnas_pixel1": 4_421_616,
    # torchvision mobilenet_v2 and keras.applications.MobileNetV2(alpha=1) trainable:
    # 3,504,872 (timm mobilenetv2_100: 3.50M).
    "mobilenetv2_100": 3_504_872,
    # torchvision mnasnet1_0 = MnasNet-B1 (no SE), timm mnasnet_100: 4,383,312.
    "mnasnet_b1": 4_383_312,
    # imgclsmob proxylessnas_mobile (transcription of mit-han-lab's proxyless_mobile):
    # 4,080,512; ProxylessNAS paper Table 2: 4.1M.
    "proxylessnas_mobile": 4_080_512,
    # Our build of facebookresearch/mobile-vision fbnet_b; its README lists 4.8M,
    # the FBNet paper 4.5M (a 0.30M gap to the paper, 0.001M to the release).
    "fbnet_b": 4_801_368,
    # keras.applications.MobileNetV2(alpha=a, weights=None) trainable counts; timm
    # mobilenetv2_035 1.68M, mobilenetv2_050 1.97M, mobilenetv2_140 6.11M.
    "mobilenetv2_035": 1_677_128,
    "mobilenetv2_050": 1_968_680,
    "mobilenetv2_075": 2_636_424,
    "mobilenetv2_130": 5_386_792,
    "mobilenetv2_140": 6_108_776,
    # torchvision mnasnet0_5 / 0_75 / 1_3 (head fixed at 1280); timm mnasnet_140 7.12M.
    "mnasnet_b1_050": 2_218_512,
    "mnasnet_b1_075": 3_170_208,
    "mnasnet_b1_130": 6_282_256,
    "mnasnet_b1_140": 7_115_728,
    # The 32x32 variants (stem stride 1): strides change no weights.
    "mobilenetv2_cifar": 3_504_872,
    "mnasnet_b1_cifar": 4_383_312,
    # No published figures: our builder's counts (round_filters, divisor 8; head
    # 1280 kept for width < 1, scaled above), pinned against regressions.
    "spnas_pixel1_035": 1_791_888,
    "spnas_pixel1_050": 2_231_840,
    "spnas_pixel1_075": 3_192_192,
    "spnas_pixel1_130": 6_897_248,
    "spnas_pixel1_140": 7_931_344,
}
# Built with Keras in the default run: the five headline nets. The width variants
# build under --runslow (each build takes seconds on a small CPU); every entry is
# also counted from its plan (the same plan the Keras builder follows) by default.
FAST_BUILD = ("spnas_pixel1", "mobilenetv2_100", "mnasnet_b1", "proxylessnas_mobile", "fbnet_b")


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def layers_of(model: keras.Model, cls) -> list:
    return [layer for layer in model.layers if type(layer) is cls]


@pytest.fixture(scope="module")
def pixel1_model():
    return build_model("spnas_pixel1")


def test_registry_lists_golden_entries():
    assert set(list_archs()) == set(GOLDEN)
    for name in list_archs():
        assert get_arch(name).params_1000 == GOLDEN[name], name


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_count_from_plan(name):
    assert count_params(name) == GOLDEN[name]


@pytest.mark.parametrize("name", FAST_BUILD)
def test_golden_count_built(name, pixel1_model):
    model = pixel1_model if name == "spnas_pixel1" else build_model(name)
    assert trainable_count(model) == GOLDEN[name]
    assert model.output_shape == (None, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(GOLDEN) - set(FAST_BUILD)))
def test_golden_count_built_width_variants(name):
    assert trainable_count(build_model(name, input_size=32)) == GOLDEN[name]


@pytest.mark.parametrize("name, published_m, tol", [
    ("mobilenetv2_100", 300.0, 0.01),  # MobileNetV2 paper, Table 4: 300M multiply-adds
    ("mnasnet_b1", 315.0, 0.01),  # torchvision mnasnet1_0: 0.31 GFLOPS (MACs); timm 0.315
])
def test_macs_match_published_figures(name, published_m, tol):
    assert plan_model(name).count_macs() / 1e6 == pytest.approx(published_m, rel=tol)


def test_macs_of_the_cifar_variants_follow_the_stem_stride():
    # Stride-1 stem at 32x32: every layer sees (32/224 * 2)^2 of the 224x224 net's pixels
    # except where the smaller maps round (2x2 at the end instead of 7x7 * 2/7).
    a = plan_model("mobilenetv2_cifar", num_classes=10).count_macs()
    b = plan_model("mobilenetv2_100", num_classes=10, input_size=64).count_macs()
    assert a == b  # 32 px with stem stride 1 = 64 px with stem stride 2, layer for layer


def test_width_override_matches_entries():
    # A width passed to the builder scales the unscaled stages exactly as the entry does.
    assert count_params("mobilenetv2_100", width=0.5) == GOLDEN["mobilenetv2_050"]
    assert count_params("mnasnet_b1", width=0.75) == GOLDEN["mnasnet_b1_075"]
    assert count_params("spnas_pixel1_075", width=1.0) == GOLDEN["spnas_pixel1"]
    # 10 classes: the FC shrinks by 1280 * 990 + 990.
    assert count_params("spnas_pixel1", num_classes=10) == GOLDEN["spnas_pixel1"] - 990 * 1281


def test_search_space_entries_keep_choices():
    for name in list_archs():
        entry = get_arch(name)
        if name.startswith("spnas_pixel1"):
            assert entry.choices is not None and entry.space.width == entry.width
            # Unscaled stages = the decoded choices at width 1; head as SearchSpace.
            from spnas.arch.handoff import stage_strings

            assert list(entry.stages) == stage_strings(SearchSpace(), entry.choices)
            assert plan_model(name).head_channels == entry.space.head_filters
            assert [lp.out_ch for lp in plan_model(name).layers] == [
                spec.out_ch for spec, c in zip(entry.space.layers(), entry.choices) if c != SKIP
            ]
        else:
            assert entry.choices is None, name


def test_round_trip_every_registry_stage():
    for name in list_archs():
        for stage in get_arch(name).stages:
            assert encode(decode(stage)) == stage, (name, stage)


def test_round_trip_specs():
    specs = [
        StageSpec("ir", 4, 5, 2, 6, 192),
        StageSpec("ds", 1, 3, 1, 1, 16, noskip=True),
        StageSpec("ir", 12, 7, 1, 3, 1984, noskip=True),
    ]
    for spec in specs:
        assert decode(encode(spec)) == spec


def test_pixel1_layer_structure(pixel1_model):
    entry = get_arch("spnas_pixel1")
    kept = [c for c in entry.choices if c != SKIP]
    assert len(entry.choices) == 22 and len(kept) == 21
    dw = layers_of(pixel1_model, keras.layers.DepthwiseConv2D)
    assert len(dw) == 21
    assert [layer.kernel_size[0] for layer in dw] == [parse_choice(c)[0] for c in kept]
    # An expansion conv wherever e > 1, with the chosen expansion.
    space = entry.space
    kept_specs = [spec for spec, c in zip(space.layers(), entry.choices) if c != SKIP]
    pw = {layer.name: layer for layer in pixel1_model.layers if layer.name.endswith("_conv_pw")}
    assert len(pw) == sum(parse_choice(c)[1] > 1 for c in kept) == 20
    for lp, choice, spec in zip(plan_model("spnas_pixel1").layers, kept, kept_specs):
        e = parse_choice(choice)[1]
        assert lp.out_ch == spec.out_ch and lp.stride == spec.stride
        if e > 1:
            assert pw[f"{lp.name}_conv_pw"].filters == lp.in_ch * e
    # Residual: the supernet's residual layers that were not skipped.
    adds = layers_of(pixel1_model, keras.layers.Add)
    assert len(adds) == sum(spec.residual for spec in kept_specs) == 14
    assert len(layers_of(pixel1_model, keras.layers.Dense)) == 1
    assert not [layer for layer in pixel1_model.layers if "spnas" in type(layer).__module__]


def test_build_from_stage_list_forward_32():
    stages = [
        "ds_r1_k3_s1_c8",
        "ir_r2_k3_s2_e3_c16",
        "ir_r1_k5_s2_e6_c24_noskip",
        "ir_r2_k3_s1_e3_c24",
    ]
    model = build_model(
        stages,
        num_classes=10,
        input_size=32,
        stem_channels=8,
        head_channels=64,
        weight_decay=1e-5,
        name="tiny",
    )
    assert model.name == "tiny" and model.input_shape == (None, 32, 32, 3)
    # Residual: ds 8->8 s1; 2nd layer of the c16 stage; both c24 s1 layers (not noskip).
    assert len(layers_of(model, keras.layers.Add)) == 4
    assert len(layers_of(model, keras.layers.DepthwiseConv2D)) == 6
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 10) and np.isfinite(y).all()
    assert model.losses  # weight decay is on
    assert trainable_count(model) == count_params(
        stages, num_classes=10, input_size=32, stem_channels=8, head_channels=64
    )


def _embedded_choices(space: SearchSpace) -> list[str]:
    choices = uniform_choices(space, "k3_e3")
    for layer in space.layers():
        if layer.skippable and layer.index % 3 == 0:
            choices[layer.index] = SKIP
    choices[5] = "k5_e6"
    return choices


@pytest.mark.parametrize(
    "run_eagerly",
    # Eager keeps the default run fast (graph tracing takes ~30 s on 2 busy cores).
    [True, pytest.param(False, marks=pytest.mark.slow)],
)
def test_build_from_arch_json_and_fit_one_step(tmp_path, run_eagerly):
    space = embedded_space(num_classes=10)
    choices = _embedded_choices(space)
    assert SKIP in choices
    path = tmp_path / "arch.json"
    write_arch(str(path), make_arch(space, choices))
    model = build_model(str(path))
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    # Channels are those of the space at its width (0.5): scaled once, not twice.
    kept = [spec for spec, c in zip(space.layers(), choices) if c != SKIP]
    plan = plan_model(path)
    assert [lp.out_ch for lp in plan.layers] == [spec.out_ch for spec in kept]
    assert [lp.stride for lp in plan.layers] == [spec.stride for spec in kept]
    assert plan.stem_channels == space.stem_filters and plan.head_channels == space.head_filters
    assert len(layers_of(model, keras.layers.DepthwiseConv2D)) == len(kept)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        jit_compile=False,
        run_eagerly=run_eagerly,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(4,))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_arch_json_dict_and_width_override(tmp_path):
    space = embedded_space(num_classes=10)
    arch = make_arch(space, _embedded_choices(space))
    assert count_params(arch) == count_params(str(_write(tmp_path, arch)))
    # An explicit width replaces the space's 0.5 (applied to unscaled channels).
    full = plan_model(arch, width=1.0)
    assert full.layers[-1].out_ch == 320 and full.num_classes == 10


def _write(tmp_path, arch, name="arch.json"):
    path = tmp_path / name
    path.write_text(json.dumps(arch))
    return path


def test_arch_json_errors(tmp_path):
    space = embedded_space(num_classes=10)
    arch = make_arch(space, _embedded_choices(space))
    with pytest.raises(ArchError, match="format 'spnas.arch/99'"):
        build_model(str(_write(tmp_path, {**arch, "format": "spnas.arch/99"}, "v99.json")))
    bad = {**arch, "stages": ["ir_r1_k3_s1_e3_c999"]}
    with pytest.raises(ArchError, match="disagree"):
        plan_model(str(_write(tmp_path, bad, "bad.json")))
    with pytest.raises(FileNotFoundError):
        plan_model(str(tmp_path / "missing.json"))


def test_unknown_name():
    with pytest.raises(ValueError, match="no_such_net.*known: .*spnas_pixel1"):
        plan_model("no_such_net")
    with pytest.raises(KeyError):  # old callers of get_arch catch KeyError
        get_arch("no_such_net")
    with pytest.raises(UnknownArchError):
        get_arch("no_such_net")


@pytest.mark.parametrize(
    "stage, token",
    [
        ("ir_r2_k3_s2_x6_c24", "'x6'"),
        ("ir_r2_k3_s2_e6", "lacks \\['c'\\]"),
        ("xx_r2_k3_s2_e6_c24", "'xx'"),
        ("ds_r1_k3_s1_e6_c16", "'e6'"),
        ("ir_r2_k3_s2_e1_c24", "spell expansion 1 as 'ds'"),
        ("ir_r2_k3_s02_e6_c24", "'s02'"),
        ("ir_k3_r2_s2_e6_c24", "'r2' is out of order"),
        ("ir_r2_k4_s2_e6_c24", "odd"),
        ("ir_r2_k3_s2_e6_c24_noskip_noskip", "'noskip' after 'noskip'"),
        ("ir_r0_k3_s2_e6_c24", ">= 1"),
    ],
)
def test_malformed_stage_string_names_token(stage, token):
    with pytest.raises(ValueError, match=token):
        build_model(["ds_r1_k3_s1_c16", stage], num_classes=10, input_size=32)


def test_decode_all_names_stage():
    with pytest.raises(ValueError, match="Stage 1: .*'x6'"):
        decode_all(["ds_r1_k3_s1_c16", "ir_r2_k3_s2_x6_c24"])
    with pytest.raises(ValueError, match="non-empty list"):
        decode_all("ir_r2_k3_s2_e6_c24")
    with pytest.raises(ValueError, match="non-empty list"):
        build_model([])


def test_downsampling_errors_name_the_layer():
    # 16 -> stem 8 -> 4 -> 2 -> 1, then a fourth stride-2 layer on a 1x1 map.
    stages = ["ir_r1_k3_s2_e3_c8"] * 4
    with pytest.raises(ArchitectureError, match="layer blocks_3_0 .*stride 2 on a 1x1"):
        build_model(stages, num_classes=10, input_size=16)
    assert plan_model(stages, num_classes=10, input_size=32).layers[-1].output_hw == 1
    with pytest.raises(ArchitectureError, match="stem has stride 2"):
        plan_model("spnas_pixel1", input_size=33)
    # The paper's net needs at least 32x32 (five stride-2 layers after the stem).
    with pytest.raises(ArchitectureError, match="blocks_8_0"):
        plan_model("spnas_pixel1", input_size=16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(width=0.0), "width"),
        (dict(dropout=1.0), "dropout"),
        (dict(input_size=0), "input_size"),
        (dict(stem_stride=0), "stem_stride"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ArchitectureError, match=match):
        plan_model("mobilenetv2_100", **kwargs)
