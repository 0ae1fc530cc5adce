"""Per-pixel negative log-likelihoods of bilinearly upsampled score maps.

SenFormer's losses compare stride-4 maps with full-size labels, so each map
is upsampled to ``K x H x W`` first. Kept for backward by autograd, these
maps (and their softmax) are most of the training memory and their
element-wise passes a large share of the step time. The functions here
compute the same values with the upsampled map alive only inside forward
and, recomputed, inside backward; autograd stores the small input and one
value per pixel.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

_MIN_PROBABILITY = 1e-15


def _upsample(maps: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.interpolate(
        maps, size=size, mode='bilinear', align_corners=align_corners)


def _upsample_backward(grad: torch.Tensor, input_shape,
                       align_corners: bool) -> torch.Tensor:
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad, grad.shape[2:], input_shape, align_corners, None, None)


class _UpsampledLogitsNLL(torch.autograd.Function):
    """``-log softmax(up(logits))[label]`` per pixel, 0 where ignored."""

    @staticmethod
    def forward(ctx, logits, label, ignore_index, align_corners):
        valid = label != ignore_index
        target = label.masked_fill(~valid, 0).unsqueeze(1)
        log_norm = torch.empty_like(label, dtype=logits.dtype)
        nll = torch.empty_like(log_norm)
        # one image at a time: a single label-size map is alive
        for i in range(len(logits)):
            up = _upsample(logits[i:i + 1], label.shape[1:], align_corners)
            log_norm[i] = torch.logsumexp(up[0], dim=0)
            nll[i] = (log_norm[i] - up[0].gather(0, target[i])[0]) * valid[i]
        ctx.save_for_backward(logits, target, valid, log_norm)
        ctx.align_corners = align_corners
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        logits, target, valid, log_norm = ctx.saved_tensors
        weight = (grad_nll * valid).unsqueeze(1)
        grad_logits = torch.empty_like(logits)
        for i in range(len(logits)):
            grad_up = _upsample(logits[i:i + 1], target.shape[2:],
                                ctx.align_corners)
            # d nll / d up = softmax(up) - one_hot(label)
            grad_up.sub_(log_norm[i]).exp_().mul_(weight[i])
            grad_up.scatter_add_(1, target[i:i + 1], -weight[i:i + 1])
            grad_logits[i:i + 1] = _upsample_backward(
                grad_up, logits[i:i + 1].shape, ctx.align_corners)
        return grad_logits, None, None, None


class _UpsampledEnsembleNLL(torch.autograd.Function):
    """Cross-entropy of ``log(clamp(up(ensemble)))`` per pixel (0 where
    ignored), and the arg-max class of ``up(ensemble)``."""

    @staticmethod
    def forward(ctx, ensemble, label, ignore_index, align_corners):
        valid = label != ignore_index
        target = label.masked_fill(~valid, 0).unsqueeze(1)
        prediction = torch.empty_like(label)
        total = torch.empty_like(label, dtype=ensemble.dtype)
        target_prob = torch.empty_like(total)
        # one image at a time: a single label-size map is alive
        for i in range(len(ensemble)):
            up = _upsample(ensemble[i:i + 1], label.shape[1:],
                           align_corners)[0]
            prediction[i] = up.argmax(dim=0)
            clamped = up.clamp_(min=_MIN_PROBABILITY)
            total[i] = clamped.sum(dim=0)
            target_prob[i] = clamped.gather(0, target[i])[0]
        # log-softmax of log(p) is log(p / sum(p))
        nll = (total.log() - target_prob.log()) * valid
        ctx.save_for_backward(ensemble, target, valid, total, target_prob)
        ctx.align_corners = align_corners
        ctx.mark_non_differentiable(prediction)
        return nll, prediction

    @staticmethod
    def backward(ctx, grad_nll, grad_prediction):
        ensemble, target, valid, total, target_prob = ctx.saved_tensors
        weight = grad_nll * valid
        grad_total = (weight / total).unsqueeze(1)
        grad_target = -(weight / target_prob).unsqueeze(1)
        grad_ensemble = torch.empty_like(ensemble)
        for i in range(len(ensemble)):
            up = _upsample(ensemble[i:i + 1], target.shape[2:],
                           ctx.align_corners)
            # d/dp_k [log sum(p) - log p_y] = 1/sum(p) - [k = y]/p_y, and
            # the clamp passes gradients only where p >= its minimum
            passes = up >= _MIN_PROBABILITY
            grad_up = passes.to(up.dtype).mul_(grad_total[i])
            index = target[i:i + 1]
            grad_up.scatter_add_(
                1, index, grad_target[i:i + 1] * passes.gather(1, index))
            grad_ensemble[i:i + 1] = _upsample_backward(
                grad_up, ensemble[i:i + 1].shape, ctx.align_corners)
        return grad_ensemble, None, None, None


def upsampled_nll(logits: torch.Tensor,
                  label: torch.Tensor,
                  ignore_index: int = 255,
                  align_corners: bool = False) -> torch.Tensor:
    """Cross-entropy per pixel of logits upsampled to the label size.

    Args:
        logits: ``B x K x h x w``.
        label: ``B x H x W`` int64.

    Returns:
        Tensor: ``B x H x W``, 0 at ignored pixels; equal to
        ``F.cross_entropy(upsample(logits), label, reduction='none')``.
    """
    return _UpsampledLogitsNLL.apply(logits, label, ignore_index,
                                     align_corners)


def upsampled_ensemble_nll(
        ensemble: torch.Tensor,
        label: torch.Tensor,
        ignore_index: int = 255,
        align_corners: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per pixel of ``log(clamp(ensemble, 1e-15))`` upsampled
    to the label size, and the upsampled ensemble's arg-max.

    Args:
        ensemble: ``B x K x h x w`` sums of class probabilities.
        label: ``B x H x W`` int64.

    Returns:
        tuple: ``B x H x W`` losses (0 at ignored pixels), equal to
        ``F.cross_entropy(log(clamp(up(ensemble))), label,
        reduction='none')``, and the ``B x H x W`` predicted classes.
    """
    return _UpsampledEnsembleNLL.apply(ensemble, label, ignore_index,
                                       align_corners)
