"""Per-pixel negative log-likelihoods (and arg-max) of bilinearly upsampled
score maps.

SenFormer's losses compare stride-4 maps with full-size labels, so each map
is upsampled to ``K x H x W`` first. Kept for backward by autograd, these
maps (and their softmax) are most of the training memory and their
element-wise passes a large share of the step time. The functions here
compute the same values with only a slab of the upsampled map alive, inside
forward and, recomputed, inside backward; autograd stores the small input
and one value per pixel.

A slab is a band of rows of one image with all its classes, laid out
channels-last (``rows x W x K``): PyTorch's bilinear kernels vectorise over
the contiguous classes (forward about 1.7x, backward 7x faster than on
``K x H x W`` maps at 150 classes), and the per-pixel reductions over the
classes (log-sum-exp, the target's logit, arg-max) read contiguous memory.
Where the label size is an integer multiple of the map's (every training
crop), a band is upsampled from the input rows it needs: its first rows
interpolate from the input row above the band, so that row is upsampled too
and its output rows are discarded. Otherwise the band is the whole image.
"""
from typing import Iterator, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from .switch import implementation_for

# elements of one upsampled slab (8 MB in float32: 24 rows of 512 x 150
# classes, plus the 4 discarded ones); the fastest of 4, 8, 16 and 32 MB
# for 150 classes at 512 x 512 (forward + backward, 2 images: 0.50 s against
# 1.35 s for the former class-major slabs, 1.0 s for whole images)
SLAB_ELEMENTS = 1 << 21


def _upsample(maps: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.interpolate(
        maps, size=size, mode='bilinear', align_corners=align_corners)


class _Band(NamedTuple):
    """Output rows ``[start, stop)`` of the upsampled map, made from input
    rows ``[in_start, in_stop)`` together with the ``skip`` rows above
    ``start``, which are discarded; ``scale`` is the row scale to pass the
    kernel, or None for the whole image."""
    start: int
    stop: int
    in_start: int
    in_stop: int
    skip: int
    scale: Optional[float]

    @property
    def out_rows(self) -> int:
        """Rows the kernel makes, the discarded ones included."""
        return self.stop - self.start + self.skip


def _bands(in_height: int, out_height: int, width: int, num_classes: int,
           align_corners: bool, slab_elements: int) -> Iterator[_Band]:
    factor, remainder = divmod(out_height, in_height)
    rows = slab_elements // (width * num_classes) // max(factor, 1) * factor
    if align_corners or remainder or rows == 0 or rows >= out_height:
        yield _Band(0, out_height, 0, in_height, 0, None)
        return
    for start in range(0, out_height, rows):
        stop = min(start + rows, out_height)
        # output row g reads input rows floor((g + 0.5) / f - 0.5) and the
        # next: from start / f - 1 (the first rows of the band) to stop / f
        in_start = max(start // factor - 1, 0)
        in_stop = min(stop // factor + 1, in_height)
        skip = start - in_start * factor
        yield _Band(start, stop, in_start, in_stop, skip, float(factor))


def _upsample_band(maps: torch.Tensor, band: _Band, width: int,
                   align_corners: bool) -> torch.Tensor:
    """``out_rows x W x K`` band of ``1 x K x h x w`` channels-last maps."""
    up = torch.ops.aten.upsample_bilinear2d(
        maps[:, :, band.in_start:band.in_stop], (band.out_rows, width),
        align_corners, band.scale, None)
    return up[0].permute(1, 2, 0)


def _upsample_band_backward(grad: torch.Tensor, band: _Band,
                            in_shape: Tuple[int, ...],
                            align_corners: bool) -> torch.Tensor:
    """Gradient of the input rows of a band from the band's
    ``out_rows x W x K`` gradient: ``1 x K x rows x w``."""
    out_rows, width, num_classes = grad.shape
    grad = grad.permute(2, 0, 1)[None]
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad, (out_rows, width),
        (1, num_classes, band.in_stop - band.in_start, in_shape[-1]),
        align_corners, band.scale, None)


def _channels_last(maps: torch.Tensor) -> torch.Tensor:
    return maps.contiguous(memory_format=torch.channels_last)


def _image_bands(maps: torch.Tensor, size, align_corners: bool,
                 slab_elements: int):
    """Upsample one image's maps band by band.

    Args:
        maps: ``1 x K x h x w``, channels-last.
        size: (H, W) of the output.

    Yields:
        tuple: the band and its upsampled rows ``rows x W x K`` (the
        discarded rows removed).
    """
    height, width = size
    for band in _bands(maps.shape[2], height, width, maps.shape[1],
                       align_corners, slab_elements):
        up = _upsample_band(maps, band, width, align_corners)
        yield band, up[band.skip:]


class _UpsampledLogitsNLL(torch.autograd.Function):
    """``-log softmax(up(logits))[label]`` per pixel, 0 where ignored, and
    optionally the arg-max class of ``up(logits)``."""

    @staticmethod
    def forward(ctx, logits, label, ignore_index, align_corners,
                with_prediction, slab_elements):
        valid = label != ignore_index
        target = label.masked_fill(~valid, 0)
        log_norm = torch.empty_like(label, dtype=logits.dtype)
        target_logit = torch.empty_like(log_norm)
        prediction = torch.empty_like(label) if with_prediction else None
        size = label.shape[1:]
        for i in range(len(logits)):
            maps = _channels_last(logits[i:i + 1])
            for band, up in _image_bands(maps, size, align_corners,
                                         slab_elements):
                rows = slice(band.start, band.stop)
                torch.logsumexp(up, dim=-1, out=log_norm[i, rows])
                target_logit[i, rows] = up.gather(
                    -1, target[i, rows, :, None])[..., 0]
                if with_prediction:
                    torch.argmax(up, dim=-1, out=prediction[i, rows])
        nll = (log_norm - target_logit) * valid
        ctx.save_for_backward(logits, target, valid, log_norm)
        ctx.align_corners = align_corners
        ctx.slab_elements = slab_elements
        if not with_prediction:
            return nll
        ctx.mark_non_differentiable(prediction)
        return nll, prediction

    @staticmethod
    def backward(ctx, grad_nll, grad_prediction=None):
        logits, target, valid, log_norm = ctx.saved_tensors
        weight = grad_nll * valid
        grad_logits = torch.zeros_like(
            logits, memory_format=torch.channels_last)
        height, width = target.shape[1:]
        for i in range(len(logits)):
            maps = _channels_last(logits[i:i + 1])
            for band in _bands(maps.shape[2], height, width, maps.shape[1],
                               ctx.align_corners, ctx.slab_elements):
                rows = slice(band.start, band.stop)
                grad_up = _upsample_band(maps, band, width,
                                         ctx.align_corners)
                kept = grad_up[band.skip:]
                # d nll / d up = softmax(up) - one_hot(label)
                kept.sub_(log_norm[i, rows, :, None]).exp_().mul_(
                    weight[i, rows, :, None])
                kept.scatter_add_(-1, target[i, rows, :, None],
                                  -weight[i, rows, :, None])
                grad_up[:band.skip] = 0
                grad_logits[i:i + 1, :, band.in_start:band.in_stop] += \
                    _upsample_band_backward(grad_up, band, maps.shape,
                                            ctx.align_corners)
        return grad_logits, None, None, None, None, None


@torch.no_grad()
def upsampled_argmax(scores: torch.Tensor,
                     size,
                     align_corners: bool = False,
                     slab_elements: int = SLAB_ELEMENTS) -> torch.Tensor:
    """Arg-max class of ``B x K x h x w`` scores upsampled to ``size``,
    ``B x H x W``; the fast implementations never hold the
    ``B x K x H x W`` map."""
    if implementation_for(scores) == 'reference':
        return _upsample(scores, size, align_corners).argmax(dim=1)
    argmax = scores.new_empty((len(scores), ) + tuple(size), dtype=torch.long)
    for i in range(len(scores)):
        maps = _channels_last(scores[i:i + 1])
        for band, up in _image_bands(maps, size, align_corners,
                                     slab_elements):
            torch.argmax(up, dim=-1, out=argmax[i, band.start:band.stop])
    return argmax


def plain_upsampled_nll(logits: torch.Tensor,
                        label: torch.Tensor,
                        ignore_index: int = 255,
                        align_corners: bool = False) -> torch.Tensor:
    """``F.cross_entropy(upsample(logits), label, reduction='none')``:
    ``B x H x W``, 0 at ignored pixels."""
    return F.cross_entropy(
        _upsample(logits, label.shape[1:], align_corners),
        label,
        ignore_index=ignore_index,
        reduction='none')


def upsampled_nll(logits: torch.Tensor,
                  label: torch.Tensor,
                  ignore_index: int = 255,
                  align_corners: bool = False,
                  slab_elements: int = SLAB_ELEMENTS) -> torch.Tensor:
    """Cross-entropy per pixel of logits upsampled to the label size; equals
    :func:`plain_upsampled_nll` in value and gradient.

    Args:
        logits: ``B x K x h x w``.
        label: ``B x H x W`` int64.
        slab_elements: size of the upsampled slabs of the fast path.

    Returns:
        Tensor: ``B x H x W``, 0 at ignored pixels.
    """
    if implementation_for(logits) == 'reference':
        return plain_upsampled_nll(logits, label, ignore_index, align_corners)
    return _UpsampledLogitsNLL.apply(logits, label, ignore_index,
                                     align_corners, False, slab_elements)


def upsampled_nll_and_argmax(
        logits: torch.Tensor,
        label: torch.Tensor,
        ignore_index: int = 255,
        align_corners: bool = False,
        slab_elements: int = SLAB_ELEMENTS
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`upsampled_nll` and, from the same slabs, the arg-max class
    of the upsampled logits, ``B x H x W`` (not differentiable)."""
    if implementation_for(logits) == 'reference':
        up = _upsample(logits, label.shape[1:], align_corners)
        nll = F.cross_entropy(
            up, label, ignore_index=ignore_index, reduction='none')
        return nll, up.detach().argmax(dim=1)
    return _UpsampledLogitsNLL.apply(logits, label, ignore_index,
                                     align_corners, True, slab_elements)
