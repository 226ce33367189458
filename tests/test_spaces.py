"""General spaces (candidate sets, projection skips, spaces as data) and the one cost
table type: NAS-Bench-Macro's counts, forced-decision equivalence of tied groups and
projection skips, decodes that never leave the set, costs exact at hard indicators."""

import itertools
import json

import keras
import numpy as np
import pytest
from keras import ops

from spnas.arch.costs import cost_records
from spnas.arch.handoff import make_arch, stage_strings
from spnas.arch.memory import ActivationTable, plan_peak
from spnas.arch.params import MacsTable, ParamsTable, plan_params
from spnas.arch.plan import plan_model
from spnas.choices import (
    CANDIDATES,
    SKIP,
    SpaceError,
    check_candidates,
    decisions_from_choice,
    encoding,
    superkernel_cost,
)
from spnas.models.builder import build_model
from spnas.space import (
    SPACE_NAMES,
    SearchSpace,
    nasbench_macro_space,
    resolve_space,
    sample_choices,
    validate_choices,
)
from spnas.superkernel import SuperkernelDepthwiseConv
from spnas.superkernel.block import MBConv, Projection
from spnas.tables.cost import CostTable, CostTableError

SUBSETS = [tuple(c for c in CANDIDATES if c in s)
           for n in range(1, 5) for s in itertools.combinations(CANDIDATES, n)]
DIGIT = {"0": SKIP, "1": "k3_e3", "2": "k5_e6"}
BIG = 1e6
C = 12  # 6 x 2 channels of a superkernel


def code_choices(code: str) -> list[str]:
    return [DIGIT[d] for d in code]


# -- NAS-Bench-Macro: spnas counts the benchmark's nets exactly ---------------------------


def test_every_benchmark_code_has_the_benchmark_params_and_macs(shared_dir):
    bench = json.loads((shared_dir / "data" / "nas-bench-macro_cifar10.json").read_text())
    assert len(bench) == 6561
    space = nasbench_macro_space()
    params, macs = ParamsTable.from_space(space), MacsTable.from_space(space)
    # Every code: the benchmark's `params` (every parameter) and `flops` (conv and FC
    # multiply-accumulates) equal spnas' exact counts, no rule needed.
    wrong = [c for c, v in bench.items()
             if params.count(code_choices(c)) != v["params"]
             or macs.count_macs(code_choices(c)) != v["flops"]]
    assert wrong == []
    # The builder's own plan (what a decoded net is built from) agrees on a sample.
    for code in list(bench)[::97]:
        plan = plan_model(make_arch(space, code_choices(code)))
        assert plan.count_params() == bench[code]["params"]
        assert plan.count_macs() == bench[code]["flops"]
    assert (params.range(), macs.range()) == ((387882.0, 2932586.0), (7.71328, 105.660928))


def _canonical(code: str) -> str:
    """The benchmark's net of a code: per stage the first layer in place, then the
    non-identity layers in order, then the identities (its trainer's reordering)."""
    out = ""
    for a, b in ((0, 2), (2, 5), (5, 8)):
        rest = code[a + 1:b]
        out += code[a] + rest.replace("0", "") + "0" * rest.count("0")
    return out


def test_spnas_builds_the_benchmarks_net_of_every_code(shared_dir):
    # The benchmark moves a stage's identities to its end (3,969 nets for 6,561 codes);
    # spnas drops them: every code's decoded stage strings are those of its class.
    bench = json.loads((shared_dir / "data" / "nas-bench-macro_cifar10.json").read_text())
    space = nasbench_macro_space()
    nets: dict[str, set] = {}
    for code in bench:
        nets.setdefault(_canonical(code), set()).add(
            tuple(stage_strings(space, code_choices(code))))
    assert len(nets) == 3969
    assert all(len(strings) == 1 for strings in nets.values())
    assert len({next(iter(v)) for v in nets.values()}) == 3969


def test_benchmark_space_layers():
    space = nasbench_macro_space()
    layers = space.layers()
    assert [(x.in_ch, x.out_ch, x.stride, x.input_hw) for x in layers] == [
        (32, 64, 2, 32), (64, 64, 1, 16), (64, 128, 2, 16), (128, 128, 1, 8), (128, 128, 1, 8),
        (128, 256, 2, 8), (256, 256, 1, 4), (256, 256, 1, 4)]
    assert [x.skip_op for x in layers] == ["projection", "identity", "projection", "identity",
                                           "identity", "projection", "identity", "identity"]
    assert all(x.searchable and x.skippable and x.candidates == ("k3_e3", "k5_e6")
               for x in layers)
    # A stage-first identity is a 'pj' stage; a later one vanishes.
    assert stage_strings(space, code_choices("01200010")) == [
        "pj_r1_s2_c64", "ir_r1_k3_s1_e3_c64", "ir_r1_k5_s2_e6_c128", "pj_r1_s2_c256",
        "ir_r1_k3_s1_e3_c256"]


def test_decoded_projection_net_builds_with_the_plan_count():
    space = nasbench_macro_space()
    choices = code_choices("02102010")
    model = build_model(make_arch(space, choices))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == plan_params(space, choices) == ParamsTable.from_space(space).count(choices)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)
    assert ActivationTable.from_space(space).count(choices) == plan_peak(
        plan_model(make_arch(space, choices)))


# -- candidate sets ------------------------------------------------------------------------


@pytest.mark.parametrize("members", SUBSETS, ids=["-".join(s) for s in SUBSETS])
def test_every_hard_state_decodes_to_a_member_and_costs_its_entry(members):
    enc = encoding(members)
    entries = {"k3_e3": 1.0, "k3_e6": 1.9, "k5_e3": 1.3, "k5_e6": 2.6, SKIP: 0.4}
    states = set()
    for a, b, s in itertools.product((0.0, 1.0), repeat=3):
        choice = enc.choice(a, b, s)
        states.add(choice)
        assert choice in members or choice == SKIP
    assert states == set(members) | {SKIP}
    for choice in (*members, SKIP):
        raw = decisions_from_choice(choice, members)
        assert enc.choice(*raw) == choice
        want = entries[choice]
        # Exact for every member (the four-candidate set too, with one ratio per expansion);
        # skip costs its projection entry.
        assert superkernel_cost(entries, *raw, members=members, exact_k3=True) == \
            pytest.approx(want)
        if not enc.full:
            assert superkernel_cost(entries, *raw, members=members) == pytest.approx(want)
    # The paper's form keeps its k3_e3 approximation R_k5e3 * R_k3e6 / R_k5e6.
    if enc.full:
        raw = decisions_from_choice("k3_e3")
        assert superkernel_cost(entries, *raw) == pytest.approx(1.3 * 1.9 / 2.6)


def test_tied_pair_is_one_group_with_one_threshold():
    enc = encoding(("k3_e3", "k5_e6"))
    assert (enc.free_a, enc.free_b) == (True, False)
    assert set(enc.a_group) == {"core_e6", "shell_e3", "shell_e6"}  # 5x5 shell + upper half
    layer = SuperkernelDepthwiseConv(candidates=("k3_e3", "k5_e6"))
    layer.build((None, 9, 9, C))
    assert layer.t5x5 is not None and layer.t100c is None and layer.t50c is not None


def test_candidate_sets_are_checked():
    assert check_candidates(["k5_e6", "k3_e3"]) == ("k3_e3", "k5_e6")
    for bad, match in (([], "non-empty"), (["k7_e3"], "'k7_e3' is not a candidate"),
                       (["k3_e3", "k3_e3"], "repeated")):
        with pytest.raises(SpaceError, match=match):
            check_candidates(bad, "space.candidates")


def _layer(members, seed=0):
    layer = SuperkernelDepthwiseConv(candidates=members)
    layer.build((None, 9, 9, C))
    layer.depthwise_kernel.assign(
        np.random.default_rng(seed).normal(size=(5, 5, C, 1)).astype("float32"))
    return layer


def _force(layer, choice):
    a, b, s = decisions_from_choice(choice, layer.candidates)
    for name, on in (("t5x5", a), ("t100c", b), ("t50c", s)):
        variable = getattr(layer, name)
        if variable is not None:
            variable.assign(-1.0 if on else BIG)


@pytest.mark.parametrize("members", [("k3_e3", "k5_e6"), ("k3_e6", "k5_e3"),
                                     ("k3_e3", "k3_e6", "k5_e6"), ("k5_e3", "k5_e6")])
def test_forced_members_equal_the_plain_depthwise_conv(members):
    x = np.random.default_rng(1).normal(size=(2, 9, 9, C)).astype("float32")
    for choice in members:
        layer = _layer(members)
        _force(layer, choice)
        assert layer.choice() == choice
        k, e = int(choice[1]), int(choice[-1])
        w = ops.convert_to_numpy(layer.depthwise_kernel)
        kernel = w[1:4, 1:4] if k == 3 else w
        channels = C if e == 6 else C // 2
        conv = keras.layers.DepthwiseConv2D(k, padding="same", use_bias=False)
        conv.build((None, 9, 9, channels))
        conv.set_weights([kernel[:, :, :channels]])
        out = ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(out[..., :channels], ops.convert_to_numpy(conv(x[..., :channels])),
                                   rtol=1e-5, atol=1e-5)
        assert not np.any(out[..., channels:])
        # The differentiable cost at the forced indicators is the table entry.
        entries = {c: 1.0 + i for i, c in enumerate(CANDIDATES)}
        layer.runtimes = {c: entries[c] for c in members}
        assert float(ops.convert_to_numpy(layer.runtime_ms())) == pytest.approx(entries[choice])


def test_random_indicator_states_never_decode_a_non_member():
    rng = np.random.default_rng(0)
    for members in SUBSETS:
        layer = _layer(members, seed=int(rng.integers(100)))
        for _ in range(6):
            for name in ("t5x5", "t100c", "t50c"):
                variable = getattr(layer, name)
                if variable is not None:
                    variable.assign(float(rng.uniform(0.0, 6.0)))
            assert layer.choice() in (*members, SKIP)


# -- projection skips ---------------------------------------------------------------------


def test_projection_skip_equals_the_plain_projection():
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 16)).astype("float32")
    block = MBConv(24, strides=2, residual=False, allow_skip=True, projection=True,
                   candidates=("k3_e3", "k5_e6"))
    block.build(x.shape)
    block.conv_dw.t50c.assign(BIG)  # skip: the projection path alone
    for bn in (block.bn2, block.bn3):  # the superkernel path's BN betas (the skip nuance)
        bn.beta.assign(np.zeros(bn.beta.shape, "float32"))
    plain = Projection(24, 2)
    plain.build(x.shape)
    plain.set_weights(block.proj.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(block(x)), ops.convert_to_numpy(plain(x)),
                               rtol=1e-5, atol=1e-5)
    assert block.conv_dw.choice() == SKIP
    # Kept, the projection adds nothing: other projection weights, the same output.
    block.conv_dw.t50c.assign(-1.0)
    kept = ops.convert_to_numpy(block(x))
    block.proj.set_weights([w + 1.0 for w in block.proj.get_weights()])
    np.testing.assert_array_equal(ops.convert_to_numpy(block(x)), kept)


def test_projection_skip_cost_comes_from_its_table_entry():
    space = nasbench_macro_space()
    macs = MacsTable.from_space(space)
    entries = macs.entries(0)
    assert set(entries) == {"k3_e3", "k5_e6", SKIP}
    assert entries[SKIP] == pytest.approx(16 * 16 * 32 * 64 / 1e6)
    assert SKIP not in macs.entries(1)  # an identity skip costs nothing: no entry
    for index in (0, 1):
        for choice in space.layers()[index].options:
            raw = decisions_from_choice(choice, space.layers()[index].candidates)
            assert macs.differentiable(index, *raw) == pytest.approx(
                macs.layer_cost(index, choice, "exact"))


# -- spaces as data, the cost table type --------------------------------------------------


def test_named_spaces_are_entries_and_round_trip():
    assert "nasbench_macro" in SPACE_NAMES
    for name in SPACE_NAMES:
        space = resolve_space(name)
        assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert "candidates" not in resolve_space("paper").to_dict()  # paper dicts stay as they were


@pytest.mark.parametrize("field,value,match", [
    ("candidates", ["k3_e3", "k9_e6"], "candidates: 'k9_e6' is not a candidate"),
    ("skip", "sometimes", "skip: 'sometimes' is not one of"),
    ("block_candidates", [["k3_e3"]], "block_candidates has 1 entries for 3 blocks"),
    ("block_skip", [None, "x", None], r"block_skip\[1\]: 'x'"),
    ("input_size", "32", "input_size: expected an integer"),
    ("blocks", "r2_k5_s22_e6_i32_o64", "blocks: expected a list"),
])
def test_bad_space_fields_are_one_line_naming_the_field(field, value, match):
    fields = nasbench_macro_space().to_dict()
    fields[field] = value
    with pytest.raises(SpaceError, match=match):
        SearchSpace.from_dict(fields)


def test_per_block_candidates_and_skip():
    fields = {**nasbench_macro_space().to_dict(), "block_candidates": [None, ["k5_e6"], None],
              "block_skip": ["none", None, "inner"]}
    space = SearchSpace.from_dict(fields)
    layers = space.layers()
    assert [x.skippable for x in layers] == [False, False, True, True, True, False, True, True]
    assert layers[2].candidates == ("k5_e6",) and layers[0].candidates == ("k3_e3", "k5_e6")
    rng = np.random.default_rng(0)
    for _ in range(50):
        validate_choices(space, sample_choices(space, rng))
    with pytest.raises(SpaceError, match="Layer 0 cannot be skipped"):
        validate_choices(space, [SKIP] + ["k3_e3"] * 7)
    with pytest.raises(SpaceError, match="not in this layer's candidate set 'k3_e3'"):
        validate_choices(space, ["k3_e3", "k3_e3", "k3_e3"] + ["k5_e6"] * 5)


def test_layers_are_resolved_once():
    space = nasbench_macro_space()
    assert space.layers() is space.layers()


def test_cost_tables_record_unit_and_reduction():
    space = nasbench_macro_space()
    choices = code_choices("12012012")
    records = cost_records(space, choices)
    assert {k: (r["unit"], r["reduction"]) for k, r in records.items()} == {
        "macs": ("MMAC", "sum"), "params": ("parameters", "sum"),
        "activation": ("elements", "max")}
    assert records["params"]["value"] == plan_params(space, choices)
    with pytest.raises(CostTableError, match="layer 3: missing key 'k5_e6'"):
        CostTable(space, "macs", "MMAC", "sum", 1.0,
                  {i: {"k3_e3": 1.0, "k5_e6": 2.0, SKIP: 0.5} if i != 3 else {"k3_e3": 1.0}
                   for i in range(8)})
