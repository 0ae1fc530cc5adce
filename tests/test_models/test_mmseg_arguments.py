"""MMSegmentation 1.x's arguments and conventions on the classes this
package shares with it (see docs/mmseg_compatibility.md)."""
import glob
import os.path as osp
import warnings
from unittest.mock import patch

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import PixelData

from mmseg.models import SegDataPreProcessor
from mmseg.models.decode_heads import FCNHead
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import CrossEntropyLoss, accuracy
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import PatchEmbed, PatchMerging
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

register_all_modules(init_default_scope=False)
CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'senformer_configs')


def _samples(labels):
    return [SegDataSample(gt_sem_seg=PixelData(data=y[None])) for y in labels]


# ------------------------------------------------------------ decode head
@patch.multiple(BaseDecodeHead, __abstractmethods__=set())
def test_resize_concat_concatenates_levels_at_the_first_size():
    head = BaseDecodeHead([4, 2], 8, num_classes=3, in_index=[2, 0],
                          input_transform='resize_concat')
    assert head.in_channels == 6
    feats = [torch.randn(1, 2, 16, 16), None, torch.randn(1, 4, 8, 8)]
    out = head._transform_inputs(feats)
    expected = torch.cat([
        feats[2],
        F.interpolate(feats[0], size=(8, 8), mode='bilinear',
                      align_corners=False)
    ], dim=1)
    torch.testing.assert_close(out, expected)
    select = BaseDecodeHead([4, 2], 8, num_classes=3, in_index=[2, 0],
                            input_transform='multiple_select')
    assert select.in_channels == [4, 2]
    assert [t.shape[1] for t in select._transform_inputs(feats)] == [4, 2]


@patch.multiple(BaseDecodeHead, __abstractmethods__=set())
def test_decode_head_configuration_errors_name_the_argument():
    with pytest.raises(ValueError, match='input_transform'):
        BaseDecodeHead([4, 2], 8, num_classes=3, in_index=[0, 1],
                       input_transform='concat')
    with pytest.raises(TypeError, match='input_transform'):
        BaseDecodeHead(4, 8, num_classes=3, input_transform='resize_concat')
    with pytest.raises(ValueError, match='out_channels'):
        BaseDecodeHead(4, 8, num_classes=19, out_channels=18)
    with pytest.raises(TypeError, match='loss_decode'):
        BaseDecodeHead(4, 8, num_classes=3, loss_decode=['CrossEntropyLoss'])
    with pytest.raises(ValueError, match='sampler'):
        BaseDecodeHead(4, 8, num_classes=3, sampler=dict(type='OHEM'))


@patch.multiple(BaseDecodeHead, __abstractmethods__=set())
def test_a_list_of_losses_is_added_up_by_loss_name():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[0, :4] = 255
    head = BaseDecodeHead(4, 8, num_classes=3, loss_decode=[
        dict(type='CrossEntropyLoss', loss_name='loss_ce'),
        dict(type='CrossEntropyLoss', loss_name='loss_ce', loss_weight=0.5),
        dict(type='CrossEntropyLoss', loss_name='loss_other',
             avg_non_ignore=True)
    ])
    losses = head.loss_by_feat(logits, _samples(labels))
    assert set(losses) == {'loss_ce', 'loss_other', 'acc_seg'}
    single = CrossEntropyLoss()(logits, labels, ignore_index=255)
    torch.testing.assert_close(losses['loss_ce'], 1.5 * single)
    assert losses['loss_other'] > single  # fewer pixels in the average
    assert head.state_dict().keys() == {'conv_seg.weight', 'conv_seg.bias'}


def test_binary_head_has_one_channel_and_thresholds_the_sigmoid():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        default = FCNHead(in_channels=4, channels=4, num_classes=2,
                          out_channels=1, num_convs=0, concat_input=False)
    assert default.threshold == 0.3 and 'threshold' in str(caught[0].message)
    head = FCNHead(in_channels=4, channels=4, num_classes=2, out_channels=1,
                   threshold=0.6, num_convs=0, concat_input=False)
    assert head.conv_seg.out_channels == 1
    model = EncoderDecoder(
        backbone=dict(type='_IdentityBackbone'),
        decode_head=dict(type='FCNHead', in_channels=4, channels=4,
                         num_classes=2, out_channels=1, threshold=0.6,
                         num_convs=0, concat_input=False))
    logits = torch.tensor([-1., 0.3, 0.5, 2.]).view(1, 1, 2, 2)
    sample = SegDataSample(metainfo=dict(ori_shape=(2, 2)))
    pred = model.postprocess_result(logits, [sample])[0].pred_sem_seg.data
    # sigmoid: 0.27, 0.57, 0.62, 0.88 against 0.6
    assert pred.flatten().tolist() == [0, 0, 1, 1]


@MODELS.register_module(name='_IdentityBackbone', force=True)
class _IdentityBackbone(nn.Module):
    """The image itself as the only feature map (tests only)."""

    def forward(self, x):
        return [x]


def test_fcn_head_without_convs_and_without_concatenation():
    head = FCNHead(in_channels=4, channels=4, num_classes=3, num_convs=0,
                   concat_input=False).eval()
    assert isinstance(head.convs, nn.Identity)
    assert not hasattr(head, 'conv_cat')
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(head([x]), head.conv_seg(x))
    with pytest.raises(ValueError, match=r'in_channels \(4\).*channels \(8'):
        FCNHead(in_channels=4, channels=8, num_classes=3, num_convs=0)
    with pytest.raises(ValueError, match='num_convs'):
        FCNHead(in_channels=4, channels=4, num_classes=3, num_convs=-1)


# --------------------------------------------------- metas and padding
def test_predictions_follow_mmseg_metas_without_batch_input_shape():
    """MMSegmentation's metas: img_shape / pad_shape / img_padding_size."""
    model = EncoderDecoder(
        backbone=dict(type='_IdentityBackbone'),
        decode_head=dict(type='FCNHead', in_channels=3, channels=3,
                         num_classes=3, num_convs=0, concat_input=False,
                         dropout_ratio=0)).eval()
    image = torch.randn(1, 3, 6, 7)
    padded = F.pad(image, (0, 3, 0, 2), value=100.)  # 8 x 10
    meta = dict(ori_shape=(6, 7), img_shape=(6, 7), pad_shape=(8, 10),
                img_padding_size=[0, 3, 0, 2], padding_size=[0, 0, 0, 0])
    out = model.predict(padded, [SegDataSample(metainfo=meta)])[0]
    expected = model.decode_head.conv_seg(image)[0]
    torch.testing.assert_close(out.seg_logits.data, expected)
    head = model.decode_head
    assert head.predict_by_feat(torch.zeros(1, 3, 4, 5),
                                [dict(img_shape=(8, 10))]).shape[2:] == (8,
                                                                          10)
    with pytest.raises(ValueError, match="'pad_shape' or 'img_shape'"):
        head.predict_by_feat(torch.zeros(1, 3, 4, 5), [dict(ori_shape=(1,
                                                                       1))])


# ------------------------------------------------------------ losses
def test_cross_entropy_takes_mmseg_positional_arguments():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[:, 0] = 255
    weight = torch.rand(2, 6, 6)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255,
                                reduction='none')
    loss = CrossEntropyLoss()
    torch.testing.assert_close(
        loss(logits, labels, weight, 7., None, 255),
        (per_pixel * weight).sum() / 7.)
    torch.testing.assert_close(
        loss(logits, labels, None, None, 'sum', 255), per_pixel.sum())
    assert loss(logits, labels, reduction_override='none',
                ignore_index=255).shape == (2, 6, 6)


@pytest.mark.parametrize('class_weight', [None, [1., 2., 0.5, 3.]])
def test_avg_non_ignore_divides_by_the_count_of_labelled_pixels(class_weight):
    """As MMSegmentation 1.x: the (class-weighted) sum over the number of
    pixels whose label is not ignore_index, whatever the class weights."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[0, :3] = 255
    weight = None if class_weight is None else torch.tensor(class_weight)
    summed = F.cross_entropy(logits, labels, weight=weight, ignore_index=255,
                             reduction='sum')
    loss = CrossEntropyLoss(class_weight=class_weight, avg_non_ignore=True)
    torch.testing.assert_close(
        loss(logits, labels, ignore_index=255), summed / 54)
    plain = CrossEntropyLoss(class_weight=class_weight)
    torch.testing.assert_close(
        plain(logits, labels, ignore_index=255), summed / 72)
    # smaller logits: upsampled inside, same rule
    small = logits[:, :, ::2, ::2].contiguous()
    up = F.interpolate(small, size=(6, 6), mode='bilinear',
                       align_corners=False)
    torch.testing.assert_close(
        loss(small, labels, ignore_index=255),
        loss(up, labels, ignore_index=255))


def test_binary_head_trains_with_the_sigmoid_cross_entropy():
    torch.manual_seed(0)
    head = FCNHead(in_channels=4, channels=4, num_classes=2, out_channels=1,
                   threshold=0.5, num_convs=0, concat_input=False,
                   loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                    avg_non_ignore=True))
    logits = torch.randn(2, 1, 4, 4)
    labels = torch.randint(0, 2, (2, 8, 8))
    labels[:, 0] = 255
    loss = head.loss_by_feat(logits, _samples(labels))['loss_ce']
    up = F.interpolate(logits, size=(8, 8), mode='bilinear',
                       align_corners=False)[:, 0]
    valid = labels != 255
    expected = F.binary_cross_entropy_with_logits(
        up[valid], labels[valid].float(), reduction='sum') / valid.sum()
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match='labels 0 and 1'):
        head.loss_by_feat(logits, _samples(labels.clamp(max=2) + 1))


def test_accuracy_takes_topk_thresh_and_ignore_index():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4],
                           [0.2, 0.3, 0.5], [0.3, 0.35, 0.35]])
    target = torch.tensor([1, 2, 0, 2])
    assert accuracy(scores, target).item() == 25.
    top1, top2 = accuracy(scores, target, topk=(1, 2))
    assert (top1.item(), top2.item()) == (25., 75.)
    assert accuracy(scores, target, 1, 0.6).item() == 25.
    assert accuracy(scores, target, 1, 0.8).item() == 0.
    assert accuracy(scores, target, 1, None, 2).item() == 50.
    with pytest.raises(ValueError, match='top-4 of only 3'):
        accuracy(scores, target, topk=4)


# --------------------------------------------------- data preprocessor
def _batch(*shapes):
    return dict(
        inputs=[
            torch.arange(3 * h * w, dtype=torch.uint8).view(3, h, w) % 251
            for h, w in shapes
        ],
        data_samples=[SegDataSample() for _ in shapes])


def test_preprocessor_defaults_are_mmsegs():
    batch = _batch((5, 6))
    out = SegDataPreProcessor()(batch)
    torch.testing.assert_close(out['inputs'][0], batch['inputs'][0].float())
    out = SegDataPreProcessor(rgb_to_bgr=True, mean=[1, 2, 3],
                              std=[2, 2, 2])(batch)
    expected = (batch['inputs'][0].flip(0).float() -
                torch.tensor([1., 2., 3.]).view(3, 1, 1)) / 2
    torch.testing.assert_close(out['inputs'][0], expected)
    with pytest.raises(ValueError, match='mean and std'):
        SegDataPreProcessor(mean=[0, 0, 0])
    with pytest.raises(ValueError, match='bgr_to_rgb and rgb_to_bgr'):
        SegDataPreProcessor(bgr_to_rgb=True, rgb_to_bgr=True)
    with pytest.raises(ValueError, match="unknown key.*'pad'"):
        SegDataPreProcessor(test_cfg=dict(pad=32))


def test_preprocessor_test_cfg_pads_at_test_time_only():
    processor = SegDataPreProcessor(size=(8, 8), test_cfg=dict(
        size_divisor=4))
    out = processor(_batch((5, 6)), training=False)
    assert out['inputs'].shape[2:] == (8, 8)
    meta = out['data_samples'][0].metainfo
    assert meta['img_padding_size'] == (0, 2, 0, 3)
    assert meta['pad_shape'] == (8, 8)
    out = SegDataPreProcessor(test_cfg=dict(size=(7, 9)))(
        _batch((5, 6)), training=False)
    assert out['inputs'].shape[2:] == (7, 9)
    # without test_cfg: the batch's largest image, no img_padding_size
    out = SegDataPreProcessor()(_batch((5, 6)), training=False)
    assert out['inputs'].shape[2:] == (5, 6)
    assert 'img_padding_size' not in out['data_samples'][0]


def test_preprocessor_batch_augments_run_in_training_only():
    calls = []

    def augment(inputs, samples):
        calls.append(inputs.shape)
        return inputs + 1, samples

    processor = SegDataPreProcessor(batch_augments=[augment])
    plain = processor(_batch((4, 4)), training=False)['inputs']
    trained = processor(_batch((4, 4)), training=True)['inputs']
    assert calls == [torch.Size([1, 3, 4, 4])]
    torch.testing.assert_close(trained, plain + 1)


@pytest.mark.parametrize(
    'path',
    sorted(glob.glob(osp.join(CONFIG_DIR, 'senformer', '*', '*.py'))),
    ids=osp.basename)
def test_every_config_states_the_normalisation_it_relies_on(path):
    """The preprocessor's defaults are MMSegmentation's (no normalisation,
    no channel swap); the published models need both."""
    preprocessor = Config.fromfile(path).model.data_preprocessor
    assert preprocessor.bgr_to_rgb is True
    assert preprocessor.mean == [123.675, 116.28, 103.53]
    assert preprocessor.std == [58.395, 57.12, 57.375]


# ------------------------------------------------- patch embed / merging
def test_patch_embed_and_merging_take_mmseg_arguments():
    torch.manual_seed(0)
    embed = PatchEmbed(in_channels=3, embed_dims=8, conv_type='Conv2d',
                       kernel_size=4, stride=4, padding='corner',
                       norm_cfg=None, input_size=(10, 10))
    assert embed.init_out_size == (3, 3)
    x = torch.randn(1, 3, 10, 10)
    tokens, hw = embed(x)
    expected = embed.projection(F.pad(x, (0, 2, 0, 2)))
    assert hw == (3, 3)
    torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2))
    merging = PatchMerging(in_channels=8, out_channels=16, kernel_size=2,
                           stride=2, padding='corner', bias=False,
                           norm_cfg=dict(type='LN'))
    merged, hw = merging(tokens, (3, 3))
    assert hw == (2, 2) and merged.shape == (1, 4, 16)
    assert set(merging.state_dict()) == {
        'norm.weight', 'norm.bias', 'reduction.weight'
    }
    assert set(embed.state_dict()) == {
        'projection.weight', 'projection.bias'
    }
