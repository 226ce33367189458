"""The thresholded group-Lasso indicator of Single-Path NAS (Eq. 2-3).

Forward is the hard step ``1(x > t)``; the backward pass uses the gradient of
``sigmoid(x - t)`` (the paper's relaxation), i.e. a straight-through estimator.
"""

from __future__ import annotations

from keras import ops


def indicator(x, threshold):
    """Hard ``1(x > threshold)`` with sigmoid gradients to ``x`` and ``threshold``.

    The soft term is added as ``soft - stop_gradient(soft)``, which is exactly
    zero in the forward pass, so the returned value is exactly 0.0 or 1.0.
    """
    hard = ops.cast(ops.greater(x, threshold), x.dtype)
    soft = ops.sigmoid(x - threshold)
    return hard + (soft - ops.stop_gradient(soft))


def group_norm(w):
    """Plain L2 (Frobenius) norm of a masked kernel, as in the authors' release.

    The paper writes ``||w||^2``; the release uses ``||w||``. We follow the
    release so that thresholds learnt with it keep their meaning. A tiny epsilon
    keeps the gradient finite when the masked kernel is exactly zero.
    """
    return ops.sqrt(ops.sum(ops.square(w)) + 1e-12)
