"""What every likelihood shares: the data/parameter checks and the one reduction over data dimensions."""
from __future__ import annotations

import torch

from .._checks import check_same_shape, check_tensor

__all__ = ["check_data_and_param", "reduce_dims"]


def reduce_dims(log_prob: torch.Tensor, per_dim: bool) -> torch.Tensor:
    """Sum a per-dimension tensor over every axis but the first (the batch)."""
    if per_dim or log_prob.dim() <= 1:
        return log_prob
    return log_prob.flatten(1).sum(dim=1)


def check_data_and_param(x, x_name, param, param_name, *, low=None, high=None, open_interval=False):
    """Require ``x`` and ``param`` to be finite floating-point tensors of one shape, batch first.

    With ``low`` given, ``x`` must also lie in ``[low, high]`` (the open interval with
    ``open_interval=True``). A ValueError names the offending argument by ``x_name`` or
    ``param_name``.
    """
    check_tensor(x_name, x, min_dim=1, support=None if low is None else (low, high), open_interval=open_interval)
    check_tensor(param_name, param, min_dim=1)
    check_same_shape(x_name, x, param_name, param)
