"""One switch choosing how the model's operations are computed.

Every operation of :mod:`mmseg.models.ops` has a plain ``reference``
implementation, written as the paper states it in PyTorch, and faster ones
that equal it in value and gradient:

``reference``
    explicit ``softmax(q k^T / sqrt(d)) v``, losses over upsampled maps,
    every activation kept for backward by autograd. For reading, testing
    and exporting.
``sdpa``
    PyTorch's fused ``scaled_dot_product_attention``, the losses fused with
    their upsampling, keys/values and GELUs recomputed in backward instead
    of kept: what runs on CUDA and in reduced precision.
``cpu``
    ``sdpa`` with the CPU kernels: the learners' cross-attention over blocks
    of keys (projected block by block where they are recomputed anyway).
``auto`` (the default)
    ``cpu`` for CPU tensors in full precision outside autocast, ``sdpa``
    otherwise; ``sdpa`` too while ``torch.compile`` traces, whose compiler
    fuses the plain operations itself and would split its graph at the CPU
    kernels' loops.

Choose with the environment variable ``MMSEG_OPS`` (read at import), with
:func:`set_implementation`, or for a scope with :func:`implementation`::

    with ops.implementation('reference'):
        losses = model.loss(inputs, data_samples)

An export (``torch.export``/ONNX) always takes ``reference``: the custom
autograd functions of the fast paths do not trace.
"""
import contextlib
import os
from typing import Iterator

import torch

IMPLEMENTATIONS = ('auto', 'reference', 'sdpa', 'cpu')
ENV_VARIABLE = 'MMSEG_OPS'
_FULL_PRECISION = (torch.float32, torch.float64)


def _checked(name: str, source: str) -> str:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f'{source}: unknown implementation {name!r}; '
                         f'choose one of {", ".join(IMPLEMENTATIONS)}')
    return name


_chosen = _checked(
    os.environ.get(ENV_VARIABLE, 'auto'), f'environment variable '
    f'{ENV_VARIABLE}')


def set_implementation(name: str) -> None:
    """Choose the implementation of every operation from now on."""
    global _chosen
    _chosen = _checked(name, 'set_implementation')


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
    """Choose the implementation of every operation within the scope."""
    global _chosen
    previous, _chosen = _chosen, _checked(name, 'implementation')
    try:
        yield
    finally:
        _chosen = previous


def chosen_implementation() -> str:
    """The implementation chosen, ``auto`` included."""
    return _chosen


def _is_exporting() -> bool:
    compiler = getattr(torch, 'compiler', None)
    exporting = getattr(compiler, 'is_exporting', None)
    return bool(exporting and exporting()) or torch.onnx.is_in_onnx_export()


def implementation_for(x: torch.Tensor) -> str:
    """The implementation (``reference``, ``sdpa`` or ``cpu``) that
    operations on ``x`` take."""
    if _is_exporting():
        return 'reference'
    if _chosen != 'auto':
        return _chosen
    if torch.compiler.is_compiling():
        return 'sdpa'
    if (x.device.type == 'cpu' and x.dtype in _FULL_PRECISION
            and not torch.is_autocast_enabled('cpu')):
        return 'cpu'
    return 'sdpa'
