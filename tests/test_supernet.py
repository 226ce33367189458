"""The supernet: parameter accounting, runtime loss, decisions, serialization.
Backend-neutral (also run under JAX)."""

import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from spnas.models import blocks
from spnas.search.supernet import Supernet, build_supernet, latency_config
from spnas.space import CANDIDATES, SearchSpace, embedded_space, uniform_choices
from spnas.superkernel import Head, MBConv, Stem
from spnas.tables.table import LatencyTable

TINY = SearchSpace(
    blocks=("r1_k3_s11_e1_i32_o16_noskip", "r2_k5_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
            "r1_k3_s11_e6_i40_o80_noskip"),
    input_size=32, width=0.5, stem_stride=2, num_classes=10,
)


def fake_table(space):
    """A made-up table with distinct entries, for plumbing tests only."""
    layers = {
        i: {c: 1.0 + 0.1 * i + 0.5 * j for j, c in enumerate(CANDIDATES)}
        for i in space.searchable_indices()
    }
    return LatencyTable(device="test", input_size=space.input_size, constant_ms=5.0, layers=layers)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def plain_k5e6_network(space):
    """The same network from plain Keras 5x5/e6 MBConv layers (no masks, no thresholds)."""
    inputs = keras.Input((space.input_size, space.input_size, 3))
    x = blocks.stem(inputs, space.stem_filters, space.stem_stride)
    for spec in space.layers():
        x = blocks.mbconv(x, spec.out_ch, spec.kernel, spec.stride, spec.expansion,
                          spec.residual, name=f"l{spec.index}")
    logits = blocks.head(x, space.head_filters, space.num_classes, space.dropout)
    return keras.Model(inputs, logits)


@pytest.mark.parametrize("space", [TINY, embedded_space()], ids=["tiny", "embedded"])
def test_trainable_weights_are_plain_plus_thresholds(space):
    supernet = build_supernet(space, fake_table(space))
    plain = plain_k5e6_network(space)
    thresholds = sum(
        3 if spec.skippable else 2 for spec in space.layers() if spec.searchable
    )
    assert trainable_count(supernet) == trainable_count(plain) + thresholds


def test_paper_space_structure():
    space = SearchSpace()
    layers = space.layers()
    assert len(layers) == 22
    assert [s.index for s in layers if s.searchable] == list(range(1, 21))
    assert not any(layers[i].skippable for i in (1, 5, 9, 13, 17))
    assert sum(s.skippable for s in layers) == 15
    # 4^5 * 5^15 architectures (paper Sec. 4.1): 3.1e13.
    n = 1
    for s in layers:
        if s.searchable:
            n *= 5 if s.skippable else 4
    assert n == 4**5 * 5**15
    assert f"{n:.1e}" == "3.1e+13"


def test_runtime_loss_uses_lambda_variable():
    table = fake_table(TINY)
    model = build_supernet(TINY, table)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    model(x, training=True)
    runtime = float(ops.convert_to_numpy(model.runtime_ms()))
    all_k5e6 = 5.0 + sum(e["k5_e6"] for e in table.layers.values())
    assert runtime == pytest.approx(all_k5e6, rel=1e-6)
    assert not model.runtime_lambda.trainable
    model.set_runtime_lambda(0.02)
    model(x, training=True)
    expected = 0.02 * 1e3 * np.log(runtime)  # reference facts: lambda * 1e3 * ln(R_ms)
    got = [float(ops.convert_to_numpy(v)) for v in model.losses]
    assert any(g == pytest.approx(expected, rel=1e-5) for g in got)


def test_forced_thresholds_decode_and_predict():
    table = fake_table(TINY)
    model = build_supernet(TINY, table)
    wanted = uniform_choices(TINY, "k3_e6")
    for block, spec in zip(model.mbconv, TINY.layers()):
        if spec.searchable:
            block.conv_dw.t5x5.assign(1e6)
            if spec.skippable:
                block.conv_dw.t50c.assign(1e6)
                wanted[spec.index] = "skip"
    assert model.choices() == wanted
    from spnas.tables.runtime_model import predict_ms

    got = float(ops.convert_to_numpy(model.runtime_ms()))
    assert got == pytest.approx(predict_ms(table, wanted, TINY), rel=1e-6)


def test_keep_prob_and_lambda_setters():
    model = build_supernet(TINY, fake_table(TINY))
    model.set_indicator_keep_prob(0.6)
    for block in model.searchable_blocks:
        assert float(ops.convert_to_numpy(block.conv_dw.keep_prob)) == pytest.approx(0.6)
    decisions = model.decisions()
    assert [d["index"] for d in decisions] == TINY.searchable_indices()
    assert all(d["d5x5"] == 1.0 for d in decisions)


def test_fit_step_and_save_load():
    model = build_supernet(TINY, fake_table(TINY))
    model.set_runtime_lambda(0.01)
    model.compile(
        optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, 4), 10)
    thresholds_before = [float(ops.convert_to_numpy(b.conv_dw.t5x5)) for b in model.searchable_blocks]
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    thresholds_after = [float(ops.convert_to_numpy(b.conv_dw.t5x5)) for b in model.searchable_blocks]
    assert thresholds_before != thresholds_after  # thresholds train with the weights
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "supernet.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5
    )
    assert loaded.choices() == model.choices()
    assert float(ops.convert_to_numpy(loaded.runtime_lambda)) == pytest.approx(0.01)


def test_latency_entries_must_match_space():
    cfg = latency_config(fake_table(TINY))
    del cfg["layers"]["2"]
    with pytest.raises(ValueError, match="searchable layers"):
        Supernet(TINY, cfg)


def test_supernet_and_plain_network_share_one_definition():
    """Stem, MBConv layers and head of the supernet are the layers the plain
    builder unrolls: same classes, same sub-layers, same weight shapes."""
    supernet = build_supernet(TINY)
    assert type(supernet.stem) is Stem and type(supernet.head) is Head
    assert all(type(b) is MBConv for b in supernet.mbconv)
    plain = plain_k5e6_network(TINY)
    by_name = {layer.name: layer for layer in plain.layers}
    for block, spec in zip(supernet.mbconv, TINY.layers()):
        assert block.searchable == spec.searchable
        for part in block.chain():
            twin = by_name[f"l{spec.index}_{part.name}"]
            if part is block.conv_dw and block.searchable:  # the 5x5 superkernel
                assert twin.kernel_size == (5, 5)
                assert tuple(part.depthwise_kernel.shape) == tuple(twin.kernel.shape)
                continue
            assert type(part) is type(twin)
            assert [tuple(w.shape) for w in part.weights] == [tuple(w.shape) for w in twin.weights]
    for part, prefix in ((supernet.stem, "stem"), (supernet.head, "head")):
        for sub in part.chain():
            twin = by_name[sub.name if sub.name == "classifier" else f"{prefix}_{sub.name}"]
            assert type(sub) is type(twin)
            assert [tuple(w.shape) for w in sub.weights] == [tuple(w.shape) for w in twin.weights]
