"""Paper-scale configs: the step counts derived from them, by hand from
reference-facts.md ("Search", "Training"): 1,281,167 ImageNet images at batch 1024.

* search (whole batches): 1,281,167 // 1024 = 1,251 steps/epoch; 8 epochs ->
  ceil(8 * 1251) = 10,008 steps; lambda warm-up 5 epochs -> 6,255 steps; lambda 0.020.
* training (MnasNet): 1,281,167 / 1024 = 1251.139... steps/epoch; 350 epochs ->
  int(350 * 1251.139) = int(437,898.6) = 437,898 steps.
"""

import pytest

from spnas.configs_path import load_config
from spnas.train.recipe import schedule_lengths

IMAGENET_TRAIN = 1_281_167
PAPER_BLOCKS = [  # reference facts, "Search space"
    "r1_k3_s11_e1_i32_o16_noskip", "r4_k5_s22_e6_i16_o24", "r4_k5_s22_e6_i24_o40",
    "r4_k5_s22_e6_i40_o80", "r4_k5_s11_e6_i80_o96", "r4_k5_s22_e6_i96_o192",
    "r1_k3_s11_e6_i192_o320_noskip",
]


def test_paper_search_step_counts():
    c = load_config("imagenet_pixel1.py")
    lengths = schedule_lengths(c.schedule, IMAGENET_TRAIN, whole_batches=True)
    assert lengths.per_epoch == 1251
    assert lengths.total == 10_008
    assert lengths.steps(c.lambda_warmup_epochs) == 6_255
    assert c.lambda_ == pytest.approx(0.020)
    assert list(c.space.blocks) == PAPER_BLOCKS


def test_paper_training_step_count():
    c = load_config("imagenet_train.py")
    lengths = schedule_lengths(c.schedule, IMAGENET_TRAIN, whole_batches=False)
    assert lengths.per_epoch == pytest.approx(IMAGENET_TRAIN / 1024)
    assert lengths.total == 437_898
    assert lengths.steps(c.schedule.warmup_epochs) == 6_256  # ceil(5 * 1251.139) = ceil(6255.7)


def test_pixel1_proxy_config(pixel1_table_path):
    from spnas.space import SearchSpace
    from spnas.tables import bind, load_table

    c = load_config("pixel1_proxy.py")
    assert c.table_proxy is True
    assert c.target_ms == pytest.approx(80.0) and c.target_tolerance == pytest.approx(0.03)
    assert list(c.space.blocks) == PAPER_BLOCKS  # same layers at the same indices
    assert c.schedule.epochs == 8.0 and c.lambda_warmup_epochs == pytest.approx(5.0)
    assert c.schedule.lr == pytest.approx(0.016 * c.schedule.batch_size / 256)
    # The proxy space (32x32, width 0.5) has the paper's 20 searchable layers, so the
    # Pixel 1 table binds to it as a proxy; 80 ms is reachable, and the all-k5e6
    # net predicts the reference check figure 131.46 ms.
    space = SearchSpace(blocks=tuple(c.space.blocks), input_size=c.data.image_size,
                        width=c.space.width, stem_stride=c.space.stem_stride,
                        block_strides=tuple(c.space.block_strides), num_classes=10)
    assert space.searchable_indices() == list(range(1, 21))
    bound = bind(load_table(pixel1_table_path), space, strict=False)
    lo, hi = bound.range_ms()
    assert lo < c.target_ms < hi
    assert hi == pytest.approx(131.46, abs=0.01)
