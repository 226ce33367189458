"""spnas: Single-Path NAS (Stamoulis et al., 2019) for Keras 3 and TensorFlow 2.

Paper: "Single-Path NAS: Designing Hardware-Efficient ConvNets in less than
4 Hours", ECML-PKDD 2019, arXiv:1904.02877.
"""

__version__ = "0.1.0"
