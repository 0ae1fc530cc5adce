"""SenFormer head behaviour: weight sharing, outputs and losses."""
import pytest
import torch

from mmseg.models.decode_heads import SenFormer, SenFormerNWS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData


def _head(cls, branch_depth=3, num_classes=5, dims=16):
    return cls(
        num_heads=2,
        branch_depth=branch_depth,
        in_channels=[dims] * 4,
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=8,
        num_classes=num_classes)


def _feats(dims=16, size=16):
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(2, dims, size // 2**i, size // 2**i, generator=g)
        for i in range(4)
    ]


def _count_block_calls(head):
    calls = []
    for learner in head.learners:
        for block in learner.layers:
            block.register_forward_hook(
                lambda m, i, o: calls.append(id(m)))
    return calls


def test_weight_sharing_applies_one_block_repeatedly():
    head = _head(SenFormer, branch_depth=3)
    assert all(len(learner.layers) == 1 for learner in head.learners)
    calls = _count_block_calls(head)
    head(_feats())
    assert len(calls) == 4 * 3
    assert len(set(calls)) == 4  # one distinct block per learner


def test_no_weight_sharing_has_distinct_blocks():
    head = _head(SenFormerNWS, branch_depth=3)
    assert all(len(learner.layers) == 3 for learner in head.learners)
    calls = _count_block_calls(head)
    head(_feats())
    assert len(calls) == 4 * 3
    assert len(set(calls)) == 12


def test_shared_equals_distinct_blocks_with_equal_weights():
    shared = _head(SenFormer, branch_depth=2).eval()
    distinct = _head(SenFormerNWS, branch_depth=2).eval()
    state = shared.state_dict()
    copied = {}
    for key, value in state.items():
        if '.layers.0.' in key:
            copied[key] = value
            copied[key.replace('.layers.0.', '.layers.1.')] = value
        else:
            copied[key] = value
    distinct.load_state_dict(copied)
    feats = _feats()
    with torch.no_grad():
        out_s, ens_s = shared(feats)
        out_d, ens_d = distinct(feats)
    torch.testing.assert_close(ens_s, ens_d)


def test_outputs_shapes_and_ensemble_sum():
    head = _head(SenFormerNWS, branch_depth=1, num_classes=5)
    learners, ensemble = head(_feats(size=32))
    assert len(learners) == 4
    assert all(t.shape == (2, 5, 32, 32) for t in learners)
    assert ensemble.shape == (2, 5, 32, 32)
    torch.testing.assert_close(
        ensemble.sum(dim=1), torch.full((2, 32, 32), 4.0))


def test_losses_match_definition():
    torch.manual_seed(0)
    head = _head(SenFormer, branch_depth=1, num_classes=5)
    feats = _feats(size=16)
    label = torch.randint(0, 5, (2, 1, 64, 64))
    label[:, :, :8] = 255
    samples = [
        SegDataSample(gt_sem_seg=PixelData(data=label[i])) for i in range(2)
    ]
    learners, ensemble = head(feats)
    losses = head.loss_by_feat((learners, ensemble), samples)
    assert set(losses) == {'loss_classic', 'loss_seg', 'acc_seg'}

    y = label[:, 0]

    def up(maps):
        return torch.nn.functional.interpolate(
            maps, size=(64, 64), mode='bilinear', align_corners=False)

    # the published formulas: the log of the clamped ensemble is taken at
    # stride 4 and upsampled as logits; each learner's cross-entropy is
    # averaged over the labelled pixels
    log_ensemble = up(ensemble.clamp(min=1e-15).log())
    torch.testing.assert_close(
        losses['loss_classic'],
        torch.nn.functional.cross_entropy(log_ensemble, y, ignore_index=255))
    ce = [
        torch.nn.functional.cross_entropy(up(t), y, ignore_index=255)
        for t in learners
    ]
    torch.testing.assert_close(losses['loss_seg'], sum(ce) / 4)
    valid = y != 255
    acc = (log_ensemble.argmax(1) == y)[valid].float().mean() * 100
    torch.testing.assert_close(losses['acc_seg'], acc)


def test_feature_strides_must_match_levels():
    with pytest.raises(ValueError, match='feature_strides'):
        SenFormer(
            num_heads=2,
            branch_depth=1,
            in_channels=[8] * 4,
            in_index=[0, 1, 2, 3],
            feature_strides=[4, 8, 16],
            channels=8,
            num_classes=3)


def test_all_ignored_crop_gives_zero_loss_not_nan():
    head = _head(SenFormer, branch_depth=1, num_classes=5)
    label = torch.full((1, 64, 64), 255)
    samples = [SegDataSample(gt_sem_seg=PixelData(data=label))] * 2
    losses = head.loss_by_feat(head(_feats(size=16)), samples)
    assert losses['loss_classic'].item() == 0
    assert torch.isfinite(losses['loss_seg'])
