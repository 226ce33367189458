"""Value tests of the superkernel's maths (paper Eq. 1-4, 10-12; reference-facts.md).

Every expected number below is computed here by hand in NumPy from the paper's /
reference facts' formulas, never taken from the module under test:

* straight-through indicator: forward ``1(x > t)``, backward ``s(x-t)(1-s(x-t))``
  w.r.t. x and its negative w.r.t. t (reference facts, "Indicator");
* the decision order d5x5 -> w' -> d100c (on w'_e6) -> d50c (on w'_e3) and the
  final kernel ``d50c (w'_e3 + d100c w'_e6)`` (reference facts, "Order");
* the runtime of Eq. 11-12 and its derivative w.r.t. each threshold, chain rule
  written out below (``dR_dt_by_hand``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spnas.superkernel.indicator import indicator
from spnas.superkernel.layer import SuperkernelDepthwiseConv

# A layer's table entries (ms), made up but with the real ordering k3e3 < k5e3, k3e6 < k5e6.
ENTRIES = {"k3_e3": 0.9, "k3_e6": 1.6, "k5_e3": 1.3, "k5_e6": 2.5}
C = 8  # channels (even: two halves of 4)


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def dsig(x):
    return sig(x) * (1.0 - sig(x))


# -- masks, by hand (reference facts: core = [1:4, 1:4], e3 = first half of channels) -----
CORE = np.zeros((5, 5, 1, 1))
CORE[1:4, 1:4] = 1.0
SHELL = 1.0 - CORE
E3 = np.zeros((1, 1, C, 1))
E3[:, :, : C // 2] = 1.0
E6 = 1.0 - E3


def fro(w):
    return float(np.sqrt(np.sum(np.square(w))))


def hand_decisions(w, t5, t100, t50):
    """The reference-facts decision order, in NumPy."""
    n5 = fro(w * SHELL)
    d5 = float(n5 > t5)
    wp = w * CORE + d5 * w * SHELL  # w' = core + d5x5 * shell
    n100 = fro(wp * E6)  # of w', not of w
    d100 = float(n100 > t100)
    n50 = fro(wp * E3)
    d50 = float(n50 > t50)
    kernel = d50 * (wp * E3 + d100 * wp * E6)
    return dict(d5x5=d5, d100c=d100, d50c=d50, norm5x5=n5, norm100c=n100, norm50c=n50,
                wp=wp, kernel=kernel)


def hand_runtime(d5, d100, d50, e=ENTRIES):
    """Eq. 11-12 (reference facts, "Runtime model")."""
    ratio = e["k3_e6"] / e["k5_e6"]
    r_ch = d50 * (e["k5_e3"] + d100 * (e["k5_e6"] - e["k5_e3"]))
    return r_ch * ratio + r_ch * (1 - ratio) * d5


def dR_dt_by_hand(w, t5, t100, t50, e=ENTRIES):
    """d R / d (t5x5, t100c, t50c) through the straight-through indicators.

    With a = R_k5e3, b = R_k5e6, q = R_k3e6 / R_k5e6 and P = q + (1 - q) d5:
      R      = d50 (a + d100 (b - a)) P
      dR/dd5   = R_ch (1 - q)               (R_ch = d50 (a + d100 (b - a)))
      dR/dd100 = d50 (b - a) P
      dR/dd50  = (a + d100 (b - a)) P
      dd/dt    = -s'(n - t),  dd/dn = s'(n - t)
    d5 also moves w' = core + d5 shell, hence n100 and n50:
      dn100/dd5 = <w'_e6, shell_e6> / n100 = d5 ||shell_e6||^2 / n100  (core, shell disjoint)
      dn50/dd5  = d5 ||shell_e3||^2 / n50
    so
      dR/dt5   = -s'(n5 - t5) [R_ch (1 - q) + dR/dd100 s'(n100 - t100) dn100/dd5
                                            + dR/dd50  s'(n50 - t50)  dn50/dd5]
      dR/dt100 = -dR/dd100 s'(n100 - t100)
      dR/dt50  = -dR/dd50  s'(n50 - t50)
    """
    h = hand_decisions(w, t5, t100, t50)
    d5, d100, d50 = h["d5x5"], h["d100c"], h["d50c"]
    n5, n100, n50 = h["norm5x5"], h["norm100c"], h["norm50c"]
    a, b, q = e["k5_e3"], e["k5_e6"], e["k3_e6"] / e["k5_e6"]
    p = q + (1 - q) * d5
    r_ch = d50 * (a + d100 * (b - a))
    dR_dd5 = r_ch * (1 - q)
    dR_dd100 = d50 * (b - a) * p
    dR_dd50 = (a + d100 * (b - a)) * p
    dn100_dd5 = d5 * np.sum(np.square(w * SHELL * E6)) / n100
    dn50_dd5 = d5 * np.sum(np.square(w * SHELL * E3)) / n50
    s5, s100, s50 = dsig(n5 - t5), dsig(n100 - t100), dsig(n50 - t50)
    dt5 = -s5 * (dR_dd5 + dR_dd100 * s100 * dn100_dd5 + dR_dd50 * s50 * dn50_dd5)
    dt100 = -dR_dd100 * s100
    dt50 = -dR_dd50 * s50
    return np.array([dt5, dt100, dt50])


def random_kernel(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.3, (5, 5, C, 1))


def make_layer(w, t5, t100, t50, runtimes=ENTRIES):
    layer = SuperkernelDepthwiseConv(strides=1, allow_skip=True, runtimes=runtimes)
    layer.build((None, 6, 6, C))
    layer.depthwise_kernel.assign(w.astype("float32"))
    layer.t5x5.assign(t5)
    layer.t100c.assign(t100)
    layer.t50c.assign(t50)
    return layer


# --- 1. the indicator itself ------------------------------------------------------------------
@pytest.mark.parametrize("x,t", [(0.3, 0.0), (1.0, 1.2), (2.5, -0.5), (-0.7, -1.0), (0.4, 0.4)])
def test_indicator_forward_is_exact_step_backward_is_sigmoid_derivative(x, t):
    xv, tv = tf.Variable(x, dtype=tf.float32), tf.Variable(t, dtype=tf.float32)
    with tf.GradientTape() as tape:
        d = indicator(xv, tv)
    gx, gt = tape.gradient(d, [xv, tv])
    assert float(d) == (1.0 if x > t else 0.0)  # exactly 0 or 1 (x == t: not greater)
    expected = dsig(x - t)  # s(x-t)(1-s(x-t)), by hand
    np.testing.assert_allclose(float(gx), expected, rtol=1e-5)
    np.testing.assert_allclose(float(gt), -expected, rtol=1e-5)


# --- 4. norms and decision order --------------------------------------------------------------
def order_sensitive_thresholds(w, d5_target):
    """Thresholds for which d5x5 == d5_target and for which taking the e3 / e6-extra norms
    on w instead of w' flips d100c and d50c (when the shell is dropped, ||w'_half|| is
    the core's norm only, which is below ||w_half||; t sits between the two)."""
    n5 = fro(w * SHELL)
    t5 = n5 - 0.1 if d5_target else n5 + 0.1
    core_e6, full_e6 = fro(w * CORE * E6), fro(w * E6)
    core_e3, full_e3 = fro(w * CORE * E3), fro(w * E3)
    if d5_target:
        # w' == w: thresholds just below the norms -> both 1 (a norm of the core only
        # would be below them: tests that the shell is added back when d5x5 = 1).
        return t5, full_e6 - 0.05, full_e3 - 0.05
    # d5x5 = 0: w' = core; norms of w' are the core's; between the core's and the full.
    return t5, 0.5 * (core_e6 + full_e6), 0.5 * (core_e3 + full_e3)


@pytest.mark.parametrize("d5_target", [0.0, 1.0])
def test_decisions_and_kernel_follow_the_decision_order(d5_target):
    w = random_kernel(1)
    t5, t100, t50 = order_sensitive_thresholds(w, d5_target)
    h = hand_decisions(w, t5, t100, t50)
    assert h["d5x5"] == d5_target
    if d5_target == 0.0:
        # the hand order gives 0 for d100c and d50c here; norms on w would give 1
        assert h["d100c"] == 0.0 and h["d50c"] == 0.0
        assert fro(w * E6) > t100 and fro(w * E3) > t50
        # and then the final kernel is all zero (skip)
        assert not np.any(h["kernel"])
    else:
        # norms of the core only (shell not added back) would be below the thresholds
        assert h["d100c"] == 1.0 and h["d50c"] == 1.0
        assert fro(w * CORE * E6) < t100 and fro(w * CORE * E3) < t50
    layer = make_layer(w, t5, t100, t50)
    got = layer.decisions()
    for k in ("d5x5", "d100c", "d50c"):
        assert got[k] == h[k], (k, got, h)
    for k in ("norm5x5", "norm100c", "norm50c"):
        np.testing.assert_allclose(got[k], h[k], rtol=1e-5)
    kernel, _, _ = layer._decide(training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), h["kernel"], rtol=1e-5, atol=1e-7)


def test_decisions_mixed_case_k3e6_kernel():
    """d5x5 = 0, d100c = 1, d50c = 1: the effective kernel is the core over all channels."""
    w = random_kernel(2)
    n5 = fro(w * SHELL)
    core_e6, core_e3 = fro(w * CORE * E6), fro(w * CORE * E3)
    layer = make_layer(w, n5 + 0.1, core_e6 - 0.05, core_e3 - 0.05)
    got = layer.decisions()
    assert (got["d5x5"], got["d100c"], got["d50c"]) == (0.0, 1.0, 1.0)
    assert layer.choice() == "k3_e6"
    kernel, _, _ = layer._decide(training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), w * CORE, rtol=1e-5, atol=1e-7)


def test_skipped_layer_zeroes_the_whole_kernel_even_with_d100c_on():
    """d50c = 0, d100c = 1: final kernel = d50c (w'_e3 + d100c w'_e6) = 0 (skip), not w'_e6."""
    w = random_kernel(6)
    n5 = fro(w * SHELL)
    layer = make_layer(w, n5 - 0.1, fro(w * E6) - 0.05, fro(w * E3) + 0.05)
    got = layer.decisions()
    assert (got["d5x5"], got["d100c"], got["d50c"]) == (1.0, 1.0, 0.0)
    assert layer.choice() == "skip"
    kernel, _, _ = layer._decide(training=False)
    assert not np.any(keras.ops.convert_to_numpy(kernel))


# --- 1. runtime and its gradient w.r.t. each threshold ------------------------------------------
CASES = {
    # name: (kernel seed, offsets of the thresholds from the norms they compare to)
    "all_on": (3, 1.0),
    "shell_off": (4, 0.0),
}


def thresholds_near(w, d5_target):
    """Thresholds close to the norms (so every s'(n - t) is sizable)."""
    n5 = fro(w * SHELL)
    t5 = n5 - 0.3 if d5_target else n5 + 0.3
    wp = w * CORE + d5_target * w * SHELL
    return t5, fro(wp * E6) - 0.4, fro(wp * E3) - 0.2


@pytest.mark.parametrize("case", sorted(CASES))
def test_runtime_and_threshold_gradients_match_eq_11_12_by_hand(case):
    seed, d5_target = CASES[case]
    w = random_kernel(seed)
    t5, t100, t50 = thresholds_near(w, d5_target)
    layer = make_layer(w, t5, t100, t50)
    h = hand_decisions(w, t5, t100, t50)
    assert (h["d5x5"], h["d100c"], h["d50c"]) == (d5_target, 1.0, 1.0)
    with tf.GradientTape() as tape:
        r = layer.runtime_ms()
    grads = tape.gradient(r, [layer.t5x5, layer.t100c, layer.t50c])
    np.testing.assert_allclose(float(r), hand_runtime(h["d5x5"], h["d100c"], h["d50c"]), rtol=1e-6)
    got = np.array([float(g) for g in grads])
    np.testing.assert_allclose(got, dR_dt_by_hand(w, t5, t100, t50), rtol=1e-4, atol=1e-7)
    # raising any threshold can only make the layer cheaper: every dR/dt < 0
    assert np.all(got < 0), got


def test_runtime_values_of_the_four_choices_by_hand():
    """Eq. 11-12 at the four corners, by hand from the table entries:
    k5e6 = R_k5e6, k5e3 = R_k5e3, k3e6 = R_k3e6, k3e3 ~ R_k5e3 R_k3e6 / R_k5e6 (not the table's)."""
    e = ENTRIES
    expected = {
        (1.0, 1.0): 2.5,  # k5e6
        (1.0, 0.0): 1.3,  # k5e3
        (0.0, 1.0): 1.6,  # k3e6
        (0.0, 0.0): 1.3 * 1.6 / 2.5,  # k3e3 = 0.832, not the table's 0.9
    }
    w = random_kernel(5)
    for (d5, d100), want in expected.items():
        n5 = fro(w * SHELL)
        t5 = n5 - 0.1 if d5 else n5 + 0.1
        wp = w * CORE + d5 * w * SHELL
        t100 = fro(wp * E6) - 0.1 if d100 else fro(wp * E6) + 0.1
        layer = make_layer(w, t5, t100, -1.0, e)
        np.testing.assert_allclose(float(layer.runtime_ms()), want, rtol=1e-6)
    # d50c = 0: a skipped layer costs 0
    layer = make_layer(w, -1.0, -1.0, 1e3, e)
    assert float(layer.runtime_ms()) == 0.0


def test_one_step_on_the_runtime_loss_alone_moves_every_threshold_up():
    """lambda > 0, no CE, no weight decay: one SGD step on lambda * 1e3 * ln(R)
    (reference facts: the 1e3 factor) raises every threshold and does not raise R."""
    from spnas.search.supernet import build_supernet
    from spnas.space import smoke_space
    from spnas.tables import load_table, resolve_table_path

    space = smoke_space()
    table = load_table(resolve_table_path("smoke_cpu"))
    model = build_supernet(space, table, weight_decay=0.0)
    model.set_runtime_lambda(0.05)
    x = np.zeros((1, space.input_size, space.input_size, 3), "float32")
    thresholds = [v for v in model.trainable_variables if v.path.split("/")[-1].startswith("t")
                  and len(v.shape) == 0]
    assert len(thresholds) == sum(3 if s.skippable else 2 for s in space.layers() if s.searchable)
    before = [float(t) for t in thresholds]
    r_before = float(model.runtime_ms())
    with tf.GradientTape() as tape:
        model(x, training=False)
        loss = tf.add_n(model.losses)
    np.testing.assert_allclose(float(loss), 0.05 * 1e3 * np.log(r_before), rtol=1e-5)
    grads = tape.gradient(loss, thresholds)
    keras.optimizers.SGD(0.01).apply_gradients(zip(grads, thresholds))
    after = [float(t) for t in thresholds]
    assert all(a > b for a, b in zip(after, before)), (before, after)
    assert float(model.runtime_ms()) <= r_before


def test_k3e3_runtime_on_the_pixel1_table_is_the_papers_approximation(pixel1_table_path):
    """Reference facts: k3e3 is approximated as R_k5e3 * R_k3e6 / R_k5e6 and the table's
    k3e3 entry is not used. Layer 1 of the release's JSON (candidates "0".."3" =
    k3e3, k3e6, k5e3, k5e6): 5.9248 * 9.2015 / 11.5892 = 4.70413... ms, not 4.4905."""
    import json

    from spnas.space import SearchSpace
    from spnas.tables import bind, load_table

    raw = json.load(open(pixel1_table_path))["1"]
    k3e3, k3e6, k5e3, k5e6 = (raw[str(j)] for j in range(4))
    assert (k3e3, k3e6, k5e3, k5e6) == (4.4905, 9.2015, 5.9248, 11.5892)
    by_hand = 5.9248 * 9.2015 / 11.5892
    assert by_hand == pytest.approx(4.70413, abs=1e-5)
    bound = bind(load_table(pixel1_table_path), SearchSpace())
    assert bound.layer_ms(1, "k3_e3") == pytest.approx(by_hand, rel=1e-9)
    assert bound.layer_ms(1, "k3_e3", model="exact") == pytest.approx(4.4905, rel=1e-9)
    for choice, want in (("k3_e6", 9.2015), ("k5_e3", 5.9248), ("k5_e6", 11.5892), ("skip", 0.0)):
        assert bound.layer_ms(1, choice) == pytest.approx(want, rel=1e-9, abs=1e-12)
