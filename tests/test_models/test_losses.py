"""Losses: the upsampling-fused forms equal the plain computation."""
import pytest
import torch
import torch.nn.functional as F

from mmseg.models import ops
from mmseg.models.losses import CrossEntropyLoss, accuracy


def _label(shape=(2, 28, 36), num_classes=5):
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, num_classes, shape, generator=g)
    label[:, :3] = 255
    return label


# a 7 x 9 map upsampled to the label: 4x (28 x 36) as training crops are,
# then in bands of 4 or 8 rows (4 and 8 x 36 pixels x 5 classes per slab),
# or to a size that is no multiple of the map's (30 x 35: one band)
@pytest.fixture(params=[
    ((28, 36), ops.SLAB_ELEMENTS),
    ((28, 36), 4 * 36 * 5),
    ((28, 36), 8 * 36 * 5),
    ((30, 35), 4 * 35 * 5),
], ids=['4x-one-band', '4x-bands-of-4-rows', '4x-bands-of-8-rows',
        'uneven-one-band'])
def size_and_slab(request):
    """Label size and slab elements: bands that meet inside the image, so
    that the rows a band reads above it (and their gradients, added across
    bands) are tested."""
    return request.param


def _up(x, size, align_corners):
    return F.interpolate(
        x, size=size, mode='bilinear', align_corners=align_corners)


@pytest.mark.parametrize('align_corners', [False, True])
def test_upsampled_nll_equals_cross_entropy_of_upsampled(
        align_corners, size_and_slab):
    size, slab_elements = size_and_slab
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, 9, dtype=torch.float64, requires_grad=True)
    label = _label((2, ) + size)
    expected = F.cross_entropy(
        _up(logits, label.shape[1:], align_corners), label,
        ignore_index=255, reduction='none')
    actual = ops.upsampled_nll(logits, label, 255, align_corners,
                               slab_elements)
    torch.testing.assert_close(actual, expected)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(
        torch.autograd.grad(actual, logits, grad)[0],
        torch.autograd.grad(expected, logits, grad)[0])
    assert torch.autograd.gradcheck(
        lambda z: ops.upsampled_nll(z, label, 255, align_corners,
                                    slab_elements), (logits, ))


@pytest.mark.parametrize('align_corners', [False, True])
def test_upsampled_nll_and_argmax_equals_published_loss_classic(
        align_corners, size_and_slab):
    """SenFormer's loss_classic: the log of the clamped ensemble, taken at
    the small size, upsampled as logits."""
    torch.manual_seed(0)
    ensemble = sum(
        torch.randn(2, 5, 7, 9, dtype=torch.float64).mul(4).softmax(1)
        for _ in range(4))
    ensemble[0, 1, :3] = 1e-20  # below the clamp
    ensemble.requires_grad_()
    size, slab_elements = size_and_slab
    label = _label((2, ) + size)
    log_ensemble = ensemble.clamp(min=1e-15).log()
    up = _up(log_ensemble, label.shape[1:], align_corners)
    expected = F.cross_entropy(up, label, ignore_index=255, reduction='none')
    actual, prediction = ops.upsampled_nll_and_argmax(
        log_ensemble, label, 255, align_corners, slab_elements)
    torch.testing.assert_close(actual, expected)
    assert torch.equal(prediction, up.argmax(dim=1))
    assert not prediction.requires_grad
    grad = torch.randn_like(expected)
    torch.testing.assert_close(
        torch.autograd.grad(actual, ensemble, grad, retain_graph=True)[0],
        torch.autograd.grad(expected, ensemble, grad)[0])
    # upsampling the ensemble first, then the log, is another loss
    other = F.cross_entropy(
        _up(ensemble, label.shape[1:], align_corners).clamp(min=1e-15).log(),
        label, ignore_index=255, reduction='none')
    assert not torch.allclose(other, expected, rtol=1e-3)


@pytest.mark.parametrize('avg_non_ignore', [False, True])
@pytest.mark.parametrize('class_weight', [None, [1., 2., 0.5, 1., 3.]])
def test_cross_entropy_loss_module(avg_non_ignore, class_weight):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 30, 35)
    label = _label((2, 30, 35))
    loss = CrossEntropyLoss(
        loss_weight=0.4,
        class_weight=class_weight,
        avg_non_ignore=avg_non_ignore)
    weight = None if class_weight is None else torch.tensor(class_weight)
    per_pixel = F.cross_entropy(
        logits, label, weight=weight, ignore_index=255, reduction='none')
    if avg_non_ignore:
        # as MMSegmentation 1.x: the sum over the count of non-ignored
        # pixels, whatever the class weights
        expected = per_pixel.sum() / (label != 255).sum()
    else:
        expected = per_pixel.mean()
    torch.testing.assert_close(
        loss(logits, label, ignore_index=255), 0.4 * expected)
    # smaller logits are upsampled inside the loss
    small = logits[:, :, ::5, ::5].contiguous()
    up = _up(small, label.shape[1:], False)
    torch.testing.assert_close(
        loss(small, label, ignore_index=255),
        loss(up, label, ignore_index=255))


@pytest.mark.parametrize('align_corners', [False, True])
def test_upsampled_argmax_equals_argmax_of_upsampled(align_corners,
                                                     size_and_slab):
    size, slab_elements = size_and_slab
    torch.manual_seed(0)
    scores = torch.randn(2, 5, 7, 9)
    label = _label((2, ) + size)
    expected = _up(scores, label.shape[1:], align_corners).argmax(dim=1)
    assert torch.equal(
        ops.upsampled_argmax(scores, label.shape[1:], align_corners,
                             slab_elements), expected)


def test_accuracy_upsamples_smaller_scores():
    scores = torch.zeros(1, 3, 2, 2)
    scores[0, 1] = 1.
    label = torch.ones(1, 8, 8, dtype=torch.long)
    label[0, 0, 0] = 255
    label[0, 1, 1] = 2
    expected = torch.tensor(100. * 62 / 63)
    torch.testing.assert_close(
        accuracy(scores, label, ignore_index=255), expected)


def test_invalid_loss_settings():
    with pytest.raises(ValueError, match='use_mask'):
        CrossEntropyLoss(use_mask=True)
    with pytest.raises(ValueError, match='loss_'):
        CrossEntropyLoss(loss_name='ce')
