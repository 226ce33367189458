"""Value tests of the optimizer and the learning-rate schedule (reference-facts.md,
"Search" and "Training"; MnasNet's TF1 code).

Expected numbers are hand computations written out here:
* TF1 ``RMSPropOptimizer`` (MnasNet): ``rms <- decay rms + (1 - decay) g^2`` from
  rms = 1, ``mom <- momentum mom + lr g / sqrt(rms + eps)`` (epsilon inside the
  root), ``w <- w - mom``; decay 0.9, momentum 0.9, epsilon 1e-3.
* TF1 ``ExponentialMovingAverage(0.9999, num_updates=n)``: decay
  ``min(0.9999, (1 + n) / (10 + n))``, ``avg <- decay avg + (1 - decay) w``.
* MnasNet ``build_learning_rate``: ``base 0.97^floor(step / (2.4 steps_per_epoch))``,
  linear warm-up ``base step / warmup_steps`` before ``warmup_steps``.
"""

import math

import keras
import numpy as np
import pytest

from spnas.train.optim import MnasRMSprop
from spnas.train.schedule import MnasNetSchedule

W0 = np.array([1.0, -2.0, 0.5], "float32")
G1 = np.array([0.01, -0.3, 2.0], "float32")  # small / medium / large: eps-in-root matters at 0.01
G2 = np.array([-0.02, 0.1, 1.0], "float32")
LR = 0.1


def rmsprop_by_hand():
    """Two TF1 RMSProp steps (decay 0.9, momentum 0.9, eps 1e-3, rms starts at 1)."""
    w = W0.astype("float64")
    rms1 = 0.9 * 1.0 + 0.1 * G1.astype("float64") ** 2
    mom1 = 0.9 * 0.0 + LR * G1 / np.sqrt(rms1 + 1e-3)
    w1 = w - mom1
    rms2 = 0.9 * rms1 + 0.1 * G2.astype("float64") ** 2
    mom2 = 0.9 * mom1 + LR * G2 / np.sqrt(rms2 + 1e-3)
    w2 = w1 - mom2
    return w1, w2


def test_first_and_second_rmsprop_updates_match_tf1_by_hand():
    var = keras.Variable(W0)
    opt = MnasRMSprop(learning_rate=LR)
    w1, w2 = rmsprop_by_hand()
    opt.apply_gradients([(keras.ops.convert_to_tensor(G1), var)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var), w1, rtol=2e-6)
    opt.apply_gradients([(keras.ops.convert_to_tensor(G2), var)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var), w2, rtol=2e-6)
    # The first step is ~ lr * g (rms starts at 1), not ~ 3 lr sign(g) (Keras' rms = 0).
    assert abs((W0 - w1)[0]) < 2 * LR * abs(G1[0])


@pytest.mark.parametrize(
    "n,decay",
    [(0, 1 / 10), (1, 2 / 11), (10, 11 / 20), (10**6, 0.9999)],  # (1 + n) / (10 + n), capped
)
def test_ema_decay_follows_num_updates(n, decay):
    var = keras.Variable(W0)
    opt = MnasRMSprop(learning_rate=LR)
    opt.build([var])
    opt.iterations.assign(n)
    avg = np.array([3.0, 4.0, -5.0], "float32")
    opt._model_variables_moving_average[0].assign(avg)
    opt.apply_gradients([(keras.ops.convert_to_tensor(G1), var)])
    w = keras.ops.convert_to_numpy(var)
    want = decay * avg + (1 - decay) * w
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(opt._model_variables_moving_average[0]), want, rtol=1e-5
    )


def test_ema_recursion_from_the_initial_weights_like_tf1():
    """TF1's ExponentialMovingAverage starts the shadow at the variable's value (Keras
    would start it at 0): the first two averages by hand."""
    var = keras.Variable(W0)
    opt = MnasRMSprop(learning_rate=LR)
    w1, w2 = rmsprop_by_hand()
    opt.apply_gradients([(keras.ops.convert_to_tensor(G1), var)])
    opt.apply_gradients([(keras.ops.convert_to_tensor(G2), var)])
    avg = W0.astype("float64")  # TF1: shadow variable starts at the variable
    for n, w in enumerate((w1, w2)):
        d = min(0.9999, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * w
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(opt._model_variables_moving_average[0]), avg, rtol=1e-5
    )


def test_ema_recursion_after_steps_by_hand():
    """Several steps: after the first, the average follows the hand recursion
    avg_n = d_n avg_{n-1} + (1 - d_n) w_n with d_n = min(0.9999, (1+n)/(10+n))."""
    var = keras.Variable(W0)
    opt = MnasRMSprop(learning_rate=LR)
    opt.apply_gradients([(keras.ops.convert_to_tensor(G1), var)])
    avg = keras.ops.convert_to_numpy(opt._model_variables_moving_average[0]).astype("float64")
    for n in range(1, 6):
        opt.apply_gradients([(keras.ops.convert_to_tensor(G2 * n), var)])
        d = min(0.9999, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * keras.ops.convert_to_numpy(var)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(opt._model_variables_moving_average[0]), avg, rtol=1e-5
        )


def test_ema_also_averages_tracked_bn_statistics_by_hand():
    """MnasNet's EMA covers the BN moving statistics: a tracked non-trainable variable
    starts its average at its value and follows the weights' recursion; the
    statistic's own value (what BN writes) is whatever it is at each step."""
    var = keras.Variable(W0)
    stat = keras.Variable(np.array([1.0, 2.0], "float32"), trainable=False)
    opt = MnasRMSprop(learning_rate=LR)
    opt.track_moving_statistics([stat])
    opt.build([var])
    avg = np.array([1.0, 2.0])
    for n, value in enumerate(([1.5, 1.0], [0.5, 3.0], [2.0, 2.5])):
        stat.assign(np.array(value, "float32"))
        opt.apply_gradients([(keras.ops.convert_to_tensor(G1), var)])
        d = min(0.9999, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * np.array(value)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(opt._statistic_averages[0]), avg, rtol=1e-5)
    with pytest.raises(RuntimeError, match="before the first step"):
        opt.track_moving_statistics([stat])


def test_ema_weights_swaps_weights_and_statistics_and_restores_them():
    from spnas.train.optim import ema_weights, moving_statistics

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=MnasRMSprop(learning_rate=LR), loss="mse")
    stats = moving_statistics(model)
    assert len(stats) == 2  # moving mean and variance of the one BN
    model.optimizer.track_moving_statistics(stats)
    x = np.random.RandomState(0).randn(8, 4, 4, 3).astype("float32")
    model.train_on_batch(x, np.zeros((8, 2), "float32"))
    raw = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables + stats]
    averages = [keras.ops.convert_to_numpy(a) for a in
                model.optimizer._model_variables_moving_average + model.optimizer._statistic_averages]
    with ema_weights(model):
        inside = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables + stats]
        for got, want in zip(inside, averages):
            np.testing.assert_allclose(got, want)
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables + stats]
    for got, want in zip(after, raw):
        np.testing.assert_array_equal(got, want)
    assert not all(np.array_equal(a, b) for a, b in zip(raw, averages))


def lr_at(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_search_schedule_staircase_boundaries_by_hand():
    """The search: batch 1024 -> 0.064, 1,281,167 images -> 1,251 whole steps per epoch,
    decay every 2.4 epochs = 3,002.4 steps, staircase from step 0: the first drop is
    at step 3,003 (floor(3003 / 3002.4) = 1), the second at 6,005 (6004.8), no warm-up."""
    base = 0.016 * 1024 / 256  # 0.064
    s = MnasNetSchedule(base, steps_per_epoch=1251)
    cases = {0: base, 3002: base, 3003: base * 0.97, 6004: base * 0.97,
             6005: base * 0.97**2, 10007: base * 0.97**3}  # 10007 / 3002.4 = 3.33
    for step, want in cases.items():
        assert lr_at(s, step) == pytest.approx(want, rel=1e-6), step


def test_training_schedule_warmup_then_staircase_from_step_zero():
    """100 steps per epoch, warm-up 5 epochs = 500 steps, decay every 240 steps
    counted from step 0: the boundaries at 240 and 480 fall inside the warm-up, so
    the first post-warm-up lr is base 0.97^2; the next drop is at 720, then 960."""
    base = 0.064
    s = MnasNetSchedule(base, steps_per_epoch=100, warmup_epochs=5)
    cases = {
        0: 0.0,
        1: base * 1 / 500,
        250: base * 0.5,
        499: base * 499 / 500,
        500: base * 0.97**2,
        719: base * 0.97**2,
        720: base * 0.97**3,
        959: base * 0.97**3,
        960: base * 0.97**4,
    }
    for step, want in cases.items():
        assert lr_at(s, step) == pytest.approx(want, rel=1e-6, abs=1e-12), step


def test_paper_training_schedule_end_value():
    """350 epochs at 1,251 steps: the last step 437,849 is past floor(437849/3002.4) = 145
    decays (hand: 437849 / 3002.4 = 145.83)."""
    s = MnasNetSchedule(0.064, steps_per_epoch=1251, warmup_epochs=5)
    assert math.floor(437849 / 3002.4) == 145
    assert lr_at(s, 437849) == pytest.approx(0.064 * 0.97**145, rel=1e-5)


def test_recipe_starts_the_accumulator_at_one_and_the_ema_at_the_weights():
    """The recipe builds the optimizer before the train step is traced: after one fit
    step on real digits every RMSProp accumulator is 0.9 * 1 + 0.1 g^2 >= 0.9 (built
    inside the trace it started at 0) and every EMA shadow is 0.1 w0 + 0.9 w1 (decay
    min(0.9999, 1/10) at step 0), not 0.9 w1 from a shadow that started at 0."""
    from spnas.configs_path import load_config
    from spnas.data import build_dataset
    from spnas.search.run import load_search_table, space_from_config
    from spnas.search.supernet import build_supernet
    from spnas.train import recipe

    config = load_config("smoke.py")
    space = space_from_config(config, 10)
    table = load_search_table(config, space)
    model = build_supernet(space, table, weight_decay=config.schedule.weight_decay)
    lengths = recipe.Lengths(4.0, 8)
    recipe.compile_model(model, config, recipe.learning_rate(config.schedule, lengths),
                         recipe.metrics(config.schedule, ce=True))
    opt = model.optimizer
    assert opt.built
    w0 = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    data, _ = build_dataset("embedded", "train", 16, space.input_size, True, input="tf")
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    velocities = [keras.ops.convert_to_numpy(v) for v in opt._velocities]
    assert min(float(v.min()) for v in velocities) >= 0.9 - 1e-6
    w1 = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    for a, b, avg in zip(w0, w1, opt._model_variables_moving_average):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(avg), 0.1 * a + 0.9 * b,
                                   rtol=1e-5, atol=1e-6)
    # The weight decay is one loss term per L2 coefficient, not one per weight.
    assert len(model.losses) <= 3
