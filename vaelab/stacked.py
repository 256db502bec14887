"""C configurations of one image VAE in one forward pass: grouped convolutions and batched products.

:func:`vaelab.sweep` trains ``C`` copies of one architecture whose parameters it stacks
along a leading configuration axis. :func:`torch.vmap` can run such a stack through the
model's own ``forward``, but on a CPU its batching rules pay for themselves poorly: each
vmapped convolution moves the configuration axis into the channels and back, once per
layer and per step. This module runs the same computation with the configuration axis
kept where the kernels want it:

* the first layer reads the one minibatch that every configuration shares, so it is a
  single convolution with ``C * out`` output channels, or a single batched product;
* every later convolution (and transposed convolution) is one grouped convolution with
  ``groups = C``, on activations laid out as ``(batch, C * channels, height, width)``;
* every dense layer is one batched product on ``(C, batch, features)``.

It computes, for each configuration, what the model's ``forward`` computes (the tests in
``tests/test_sweep.py`` hold a sweep to separate fits), for the layers the vaelab image
models are built from (:func:`supported` says whether a model qualifies).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .divergences import gaussian_kl

__all__ = ["stacked_forward", "supported"]

_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.ELU)
_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Flatten, nn.Unflatten, *_ACTIVATIONS)

# How a tensor between two layers holds its C configurations:
_SHARED = "shared"  # (batch, ...), the same for every configuration (the input)
_GROUPED = "grouped"  # (batch, C * channels, height, width): what a grouped convolution reads
_STACKED = "stacked"  # (C, batch, ...): what a batched product reads


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) Sequential in the order they run, with their parameter prefixes."""
    return [(f"{prefix}.{name}" if name else prefix, m) for name, m in module.named_modules()
            if not any(True for _ in m.children())]


def supported(model) -> bool:
    """Whether :func:`stacked_forward` computes this model: vaelab's MLP and conv layers, and a
    decoder head without parameters or buffers (Bernoulli, continuous Bernoulli, Beta, logistic)."""
    head = model.head
    if any(True for _ in head.parameters()) or any(True for _ in head.buffers()):
        return False
    for _, layer in _leaves(model.encoder, "encoder") + _leaves(model.decoder, "decoder"):
        if not isinstance(layer, _LAYERS):
            return False
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            return False
        if isinstance(layer, nn.Unflatten) and layer.dim != 1:
            return False
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and (layer.groups != 1 or layer.padding_mode != "zeros"):
            return False
    return True


def _stacked(h: torch.Tensor, layout: str, count: int) -> torch.Tensor:
    """``h`` as ``(C, batch, ...)``."""
    if layout == _SHARED:
        return h.expand(count, *h.shape)
    if layout == _GROUPED:
        return h.unflatten(1, (count, -1)).transpose(0, 1)
    return h


def _grouped(h: torch.Tensor, layout: str, count: int) -> torch.Tensor:
    """``h`` as ``(batch, C * channels, height, width)``."""
    if layout == _SHARED:
        return h.repeat(1, count, 1, 1)
    if layout == _STACKED:
        return h.transpose(0, 1).flatten(1, 2)
    return h


def _layer(layer: nn.Module, name: str, parameters: dict, h: torch.Tensor, layout: str, count: int):
    """One layer for all C configurations: ``(output, its layout)``."""
    if isinstance(layer, _ACTIVATIONS):
        if isinstance(layer, nn.ReLU):
            return F.relu(h), layout
        if isinstance(layer, nn.Tanh):
            return torch.tanh(h), layout
        return F.elu(h, layer.alpha), layout
    if isinstance(layer, nn.Flatten):
        if layout == _GROUPED:  # (batch, C * ch, H, W) -> (C, batch, ch * H * W), a view
            return h.unflatten(1, (count, -1)).flatten(2).transpose(0, 1), _STACKED
        return h.flatten(2 if layout == _STACKED else 1), layout
    if isinstance(layer, nn.Unflatten):
        return h.unflatten(2 if layout == _STACKED else 1, layer.unflattened_size), layout
    weight = parameters[f"{name}.weight"]
    bias = parameters.get(f"{name}.bias")
    if isinstance(layer, nn.Linear):  # weight (C, out, in)
        if layout == _GROUPED:
            h, layout = _stacked(h, layout, count).flatten(2), _STACKED
        out = torch.matmul(h, weight.transpose(1, 2))  # (batch, in) or (C, batch, in) -> (C, batch, out)
        return (out if bias is None else out + bias.unsqueeze(1)), _STACKED
    flat_bias = None if bias is None else bias.reshape(-1)
    if isinstance(layer, nn.Conv2d):  # weight (C, out, in, k, k)
        if layout == _SHARED:  # one convolution with C * out channels
            return F.conv2d(h, weight.flatten(0, 1), flat_bias, layer.stride, layer.padding, layer.dilation), _GROUPED
        return F.conv2d(_grouped(h, layout, count), weight.flatten(0, 1), flat_bias, layer.stride, layer.padding,
                        layer.dilation, groups=count), _GROUPED
    # ConvTranspose2d: weight (C, in, out, k, k)
    return F.conv_transpose2d(_grouped(h, layout, count), weight.flatten(0, 1), flat_bias, layer.stride, layer.padding,
                              layer.output_padding, count, layer.dilation), _GROUPED


def stacked_forward(model, parameters: dict, x: torch.Tensor, eps: torch.Tensor, count: int):
    """The reparameterised pass of ``count`` configurations of ``model``.

    Args:
        model: the template :class:`vaelab.VAE` (its layers; its own weights are not read).
        parameters: ``{name: (C, *shape)}``, the stacked parameters by ``named_parameters`` name.
        x: ``(batch, *data_shape)``, one minibatch for every configuration.
        eps: ``(batch, latent)`` standard-normal noise, the same for every configuration.
        count: ``C``.

    Returns:
        ``(params, kl_per_dim)``: the decoder head's parameters, each ``(C, batch, *data_shape)``,
        and the KL per latent dimension, ``(C, batch, latent)`` nats, as ``model(x, eps)``
        gives them for each configuration.
    """
    h, layout = x, _SHARED
    for name, layer in _leaves(model.encoder, "encoder"):
        h, layout = _layer(layer, name, parameters, h, layout, count)
    mu, logvar = _stacked(h, layout, count).chunk(2, dim=-1)
    h, layout = mu + torch.exp(0.5 * logvar) * eps, _STACKED
    for name, layer in _leaves(model.decoder, "decoder"):
        h, layout = _layer(layer, name, parameters, h, layout, count)
    out = _stacked(h, layout, count)
    params = model.head.params(out.flatten(0, 1))
    return {key: value.unflatten(0, (count, -1)) for key, value in params.items()}, gaussian_kl(mu, logvar)
