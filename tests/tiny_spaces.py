"""Tiny search spaces shared by the profiling tests (cheap to convert and time)."""

# Stem s2 -> fixed e1 layer -> one searchable block of two layers (s2, then s1
# with a residual) -> head; width 0.25 makes every width 8 channels.
TINY = dict(
    blocks=("r1_k3_s11_e1_i32_o16_noskip", "r2_k5_s22_e6_i16_o24"),
    input_size=16,
    width=0.25,
    head_channels=64,
    num_classes=10,
)
# The same with one searchable layer: 7 models to convert instead of 11.
ONE_LAYER = {**TINY, "blocks": ("r1_k3_s11_e1_i32_o16_noskip", "r1_k5_s22_e6_i16_o24")}
