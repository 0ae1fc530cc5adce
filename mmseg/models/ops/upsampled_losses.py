"""Per-pixel negative log-likelihoods (and arg-max) of bilinearly upsampled
score maps.

SenFormer's losses compare stride-4 maps with full-size labels, so each map
is upsampled to ``K x H x W`` first. Kept for backward by autograd, these
maps (and their softmax) are most of the training memory and their
element-wise passes a large share of the step time. The functions here
compute the same values with only a slab of the upsampled map alive, inside
forward and, recomputed, inside backward; autograd stores the small input
and one value per pixel.

The slabs are one image and a group of classes (bilinear upsampling acts on
each class map alone): small enough that the allocator reuses their memory
instead of mapping fresh pages for every pass, and that the classes'
reductions (log-sum-exp, sum, arg-max) are merged across groups exactly.
"""
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F

from .switch import implementation_for

# elements of one upsampled slab (8 MB in float32): well below glibc's mmap
# threshold (at most 32 MB), so freed slabs are reused without page faults;
# fastest of 1, 4, 8, 16 and 32 MB for 150 classes at 512 x 512
SLAB_ELEMENTS = 1 << 21


def _upsample(maps: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.interpolate(
        maps, size=size, mode='bilinear', align_corners=align_corners)


def _upsample_backward(grad: torch.Tensor, input_shape,
                       align_corners: bool) -> torch.Tensor:
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad, grad.shape[2:], input_shape, align_corners, None, None)


def _class_groups(num_classes: int, num_pixels: int,
                  slab_elements: int) -> Iterator[slice]:
    step = max(1, slab_elements // num_pixels)
    for start in range(0, num_classes, step):
        yield slice(start, min(start + step, num_classes))


def _slabs(maps: torch.Tensor, target: torch.Tensor, align_corners: bool,
           slab_elements: int):
    """Upsample one image's class maps group by group.

    Args:
        maps: ``K x h x w``.
        target: ``H x W`` class of every pixel.

    Yields:
        tuple: the class slice; its upsampled slab ``c x H x W``; the
        target's index within the slab (clamped into it) ``1 x H x W``; and
        whether the target lies in the slab, ``H x W``.
    """
    for group in _class_groups(len(maps), target.numel(), slab_elements):
        # a slice of channels-last maps (the convolution heads' output) is
        # strided in every layout, which halves the upsampling speed
        slab = _upsample(maps[None, group].contiguous(), target.shape,
                         align_corners)[0]
        inside = (target >= group.start) & (target < group.stop)
        local = (target - group.start).clamp_(0, len(slab) - 1)[None]
        yield group, slab, local, inside


def _pick(slab: torch.Tensor, local: torch.Tensor,
          inside: torch.Tensor) -> torch.Tensor:
    """``H x W`` values of the target classes lying in the slab, else 0."""
    return slab.gather(0, local)[0].where(inside, 0)


def _merge_argmax(slab: torch.Tensor, group: slice, best: torch.Tensor,
                  argmax: torch.Tensor) -> None:
    """Update the running ``H x W`` maximum and arg-max (in place) with a
    slab of classes; a tie keeps the earlier class, as ``argmax`` does."""
    group_best, group_argmax = slab.max(dim=0)
    better = group_best > best
    best.copy_(group_best.where(better, best))
    argmax.copy_((group_argmax + group.start).where(better, argmax))


class _UpsampledLogitsNLL(torch.autograd.Function):
    """``-log softmax(up(logits))[label]`` per pixel, 0 where ignored, and
    optionally the arg-max class of ``up(logits)``."""

    @staticmethod
    def forward(ctx, logits, label, ignore_index, align_corners,
                with_prediction, slab_elements):
        valid = label != ignore_index
        target = label.masked_fill(~valid, 0)
        log_norm = torch.full_like(label, -torch.inf, dtype=logits.dtype)
        target_logit = torch.zeros_like(log_norm)
        if with_prediction:
            prediction = torch.zeros_like(label)
            best = torch.full_like(log_norm, -torch.inf)
        for i in range(len(logits)):
            for group, slab, local, inside in _slabs(
                    logits[i], target[i], align_corners, slab_elements):
                if with_prediction:
                    _merge_argmax(slab, group, best[i], prediction[i])
                torch.logaddexp(
                    log_norm[i], slab.logsumexp(dim=0), out=log_norm[i])
                target_logit[i] += _pick(slab, local, inside)
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
        grad_logits = torch.empty_like(logits)
        for i in range(len(logits)):
            for group, slab, local, inside in _slabs(
                    logits[i], target[i], ctx.align_corners,
                    ctx.slab_elements):
                # d nll / d up = softmax(up) - one_hot(label)
                grad_up = slab.sub_(log_norm[i]).exp_().mul_(weight[i])
                grad_up.scatter_add_(0, local, -(weight[i] * inside)[None])
                grad_logits[i, group] = _upsample_backward(
                    grad_up[None], (1, len(grad_up)) + logits.shape[2:],
                    ctx.align_corners)[0]
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
    argmax = scores.new_zeros((len(scores), ) + tuple(size), dtype=torch.long)
    best = torch.full_like(argmax, -torch.inf, dtype=scores.dtype)
    target = argmax[0]  # only its shape is used
    for i in range(len(scores)):
        for group, slab, _, _ in _slabs(scores[i], target, align_corners,
                                        slab_elements):
            _merge_argmax(slab, group, best[i], argmax[i])
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
