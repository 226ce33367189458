"""The multi-path baseline of the search-cost benchmark (bench/multipath.py, paper
Eq. 5) and the benchmark's bookkeeping: golden parameter counts on a tiny space,
the softmax mixing, one train step, the expected-latency loss."""

import sys

import keras
import numpy as np
import pytest
from keras import ops

from tests.helpers import REPO

if str(REPO) not in sys.path:  # ``bench`` lives beside ``spnas``, not inside it
    sys.path.insert(0, str(REPO))

from bench.multipath import (  # noqa: E402
    MultiPathMBConv,
    build_multipath_supernet,
    expected_multipath_params,
)
from bench.search_cost import (  # noqa: E402
    BenchConfigError,
    build_fixed,
    expected_threshold_params,
    load_benchmark_table,
)
from spnas.search.supernet import build_supernet  # noqa: E402
from spnas.space import CANDIDATES, SearchSpace, embedded_space  # noqa: E402
from spnas.superkernel import Head, MBConv, Stem  # noqa: E402
from spnas.tables.table import LatencyTable  # noqa: E402

# Stem 8 ch, s1; layer 0 fixed e1 k3 8->8; layers 1-2 searchable (1: s2, 8->16,
# not skippable; 2: 16->16, skippable, residual); layer 3 fixed k3 e6 16->16; head 32.
TINY = SearchSpace(
    blocks=("r1_k3_s11_e1_i8_o8_noskip", "r2_k5_s22_e6_i8_o16", "r1_k3_s11_e6_i16_o16_noskip"),
    input_size=8, stem_channels=8, stem_stride=1, head_channels=32, num_classes=3,
)


def trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def test_golden_parameter_counts():
    # Per MBConv path (k, e) with i in / o out channels: e*i*i (expansion) + k*k*e*i
    # (depthwise) + e*i*o (projection) + 2*(2*e*i + o) (BN gamma/beta).
    #   stem 3*3*3*8 + 16 = 232; layer 0: 3*3*8 + 16 + 8*8 + 16 = 168;
    #   layer 1 (i8 o16): k3e3 920, k3e6 1808, k5e3 1304, k5e6 2576;
    #   layer 2 (i16 o16): k3e3 2192, k3e6 4352, k5e3 2960, k5e6 5888;
    #   layer 3 (k3e6 i16 o16): 4352; head 16*32 + 64 + 32*3 + 3 = 675.
    # fixed = 232 + 168 + 2576 + 5888 + 4352 + 675 = 13891
    # single-path = fixed + 2 (t5x5, t100c) + 3 (+ t50c) = 13896
    # multi-path = 232 + 168 + (6608 + 4 logits) + (15392 + 5 logits) + 4352 + 675 = 27436
    fixed = build_fixed(TINY, weight_decay=1e-5)
    sp = build_supernet(TINY)
    mp = build_multipath_supernet(TINY)
    assert trainable_count(fixed) == 13891
    assert trainable_count(sp) == 13896
    assert trainable_count(sp) - trainable_count(fixed) == expected_threshold_params(TINY) == 5
    assert trainable_count(mp) == 27436 == expected_multipath_params(TINY, trainable_count(sp))


def test_paths_and_uniform_initial_weights():
    mp = build_multipath_supernet(TINY)
    first, second = mp.searchable_blocks
    assert first.path_names == list(CANDIDATES)
    assert second.path_names == [*CANDIDATES, "skip"]
    for block in (first, second):
        w = ops.convert_to_numpy(block.path_weights())
        np.testing.assert_allclose(w, np.full(block.num_paths, 1.0 / block.num_paths), rtol=1e-6)
    assert mp.mbconv[0].__class__.__name__ == "SearchableMBConv"  # fixed layers as in spnas


def test_softmax_mixing_selects_single_paths():
    layer = MultiPathMBConv(in_channels=16, filters=16, allow_skip=True, residual=True)
    layer.build((None, 4, 4, 16))
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 16)).astype("float32")
    big = 60.0  # softmax of one logit 60 above the others is 1 to float32 precision

    layer.arch_logits.assign(np.array([0, 0, 0, 0, big], "float32"))  # skip only
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x, rtol=1e-5, atol=1e-5)

    layer.arch_logits.assign(np.array([0, 0, big, 0, 0], "float32"))  # k5_e3 only
    p = layer.paths[2]
    h = ops.relu(p["bn1"](p["conv_pw"](x)))
    h = ops.relu(p["bn2"](p["conv_dw"](h)))
    want = ops.convert_to_numpy(p["bn3"](p["conv_pwl"](h))) + x
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), want, rtol=1e-5, atol=1e-5)
    assert p["conv_dw"].kernel_size == (5, 5) and p["conv_pw"].filters == 48


def test_skip_path_needs_identity_shape():
    with pytest.raises(ValueError, match="skip path needs stride 1"):
        MultiPathMBConv(in_channels=8, filters=16, strides=2, allow_skip=True)


def test_one_train_step_updates_weights_and_logits():
    mp = build_multipath_supernet(TINY)
    mp.compile(
        optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        # One step: TF's graph tracing costs more than it saves; JAX's eager
        # op-by-op dispatch compiles every op, one XLA compile is cheaper.
        run_eagerly=keras.backend.backend() != "jax",
        jit_compile=keras.backend.backend() == "jax",
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 4)]
    logits_before = [ops.convert_to_numpy(b.arch_logits).copy() for b in mp.searchable_blocks]
    loss = mp.train_on_batch(x, y)
    assert np.isfinite(np.asarray(loss)).all()
    for before, block in zip(logits_before, mp.searchable_blocks):
        assert np.any(ops.convert_to_numpy(block.arch_logits) != before), block.name


def test_expected_latency_loss():
    # A made-up two-layer table: plumbing only, no device measurement.
    rows = {1: dict(zip(CANDIDATES, (1.0, 2.0, 3.0, 4.0))),
            2: dict(zip(CANDIDATES, (2.0, 4.0, 6.0, 8.0)))}
    table = LatencyTable(device="test", input_size=8, constant_ms=10.0, layers=rows)
    mp = build_multipath_supernet(TINY, table, weight_decay=0.0)  # losses: runtime only
    # Uniform weights: 4 paths in layer 1 (10 / 4), 5 in layer 2 with skip at 0 ms (20 / 5).
    got = float(ops.convert_to_numpy(mp.expected_runtime_ms()))
    assert got == pytest.approx(10.0 + 2.5 + 4.0, rel=1e-6)
    mp.runtime_lambda.assign(0.5)
    mp(np.zeros((1, 8, 8, 3), "float32"))
    assert len(mp.losses) == 1
    assert float(ops.convert_to_numpy(mp.losses[0])) == pytest.approx(
        0.5 * 1e3 * np.log(16.5), rel=1e-5
    )


def test_benchmark_refuses_table_for_other_spaces(pixel1_table_path):
    with pytest.raises(BenchConfigError, match="Pixel 1 table describes"):
        load_benchmark_table(pixel1_table_path, embedded_space())
    assert load_benchmark_table(None, embedded_space()) is None
    table = load_benchmark_table(pixel1_table_path, SearchSpace())
    assert len(table.layers) == 20
    # The paper space: 15 skippable and 5 block-first searchable layers.
    assert expected_threshold_params(SearchSpace()) == 15 * 3 + 5 * 2


def test_paths_stem_head_are_the_package_layers():
    """Every MBConv path is the package's MBConv (fixed); stem, head and fixed layers
    are the single-path supernet's own classes."""
    mp = build_multipath_supernet(TINY)
    sp = build_supernet(TINY)
    assert type(mp.stem) is type(sp.stem) is Stem and type(mp.head) is type(sp.head) is Head
    for block in mp.searchable_blocks:
        assert all(type(p) is MBConv and not p.searchable for p in block.path_blocks)
        assert [p.kernel_size for p in block.path_blocks] == [3, 3, 5, 5]
        assert [p.expansion for p in block.path_blocks] == [3, 6, 3, 6]
    fixed = [b for b in mp.mbconv if not isinstance(b, MultiPathMBConv)]
    assert [b.get_config() for b in fixed] == [b.get_config() for b in sp.mbconv if not b.searchable]
