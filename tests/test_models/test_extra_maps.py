"""A head's extra maps (SegLogits.extras) travel through the segmentor's
whole and sliding-window inference, the test-time augmentation, the metric
and the inferencer like its logits, without those layers knowing the
head: here a head that is not SenFormer predicts a map named ``doubled``."""
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from PIL import Image

from mmseg.evaluation import IoUMetric
from mmseg.models.decode_heads import FCNHead
from mmseg.models.segmentors import SegTTAModel
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample, SegLogits
from mmseg.utils import register_all_modules
from tests.test_models.model_utils import model_cfg

TOY = 'senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py'
NUM_CLASSES = 5


@MODELS.register_module(force=True)
class DoubledMapTestHead(FCNHead):
    """An FCN head that, with ``test_cfg.return_doubled``, also predicts
    twice its logits as the extra map ``doubled`` (doubling is exact in
    floating point, so every resize and average of it is exactly twice
    that of the logits)."""

    def predict_with_extras(self, inputs, batch_img_metas, test_cfg):
        if not test_cfg.get('return_doubled'):
            return super().predict_with_extras(inputs, batch_img_metas,
                                               test_cfg)
        logits = self.predict(inputs, batch_img_metas, test_cfg)
        return SegLogits(logits, {'doubled': 2 * logits})


def _model(head='DoubledMapTestHead', **test_cfg):
    register_all_modules()
    cfg = model_cfg(TOY)
    cfg.decode_head = ConfigDict(
        type=head, in_channels=64, channels=8, num_convs=1,
        concat_input=False, num_classes=NUM_CLASSES, in_index=0)
    cfg.test_cfg = ConfigDict(test_cfg)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def _predict(model, size=(40, 56), ori_shape=(30, 70), flip=False):
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *size), generator=g,
                          dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(
        img_shape=size, ori_shape=ori_shape, flip=flip,
        flip_direction='horizontal'))
    label = torch.randint(0, NUM_CLASSES, (1, *ori_shape), generator=g)
    sample.gt_sem_seg = PixelData(data=label)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]))
    with torch.no_grad():
        return model(**data, mode='predict')[0]


@pytest.mark.parametrize('mode', [
    dict(mode='whole'),
    dict(mode='slide', crop_size=(32, 32), stride=(16, 24)),
])
def test_extra_map_is_restored_like_the_logits(mode):
    sample = _predict(_model(return_doubled=True, **mode), flip=True)
    assert sample.extra_logits.keys() == ['doubled']
    logits = sample.seg_logits.data
    assert logits.shape == (NUM_CLASSES, 30, 70)
    torch.testing.assert_close(sample.extra_logits.doubled, 2 * logits,
                               rtol=0, atol=0)
    # asked for nothing, the head predicts nothing extra
    assert 'extra_logits' not in _predict(_model(**mode))


def test_tta_averages_each_extra_map_like_the_logits():
    model = _model(return_doubled=True)
    views = [_predict(model), _predict(model, flip=True)]
    merged = SegTTAModel(module=model).merge_preds([views])[0]

    def mean_softmax(maps):
        return sum(m.softmax(dim=0) for m in maps) / len(maps)

    torch.testing.assert_close(
        merged.extra_logits.doubled,
        mean_softmax([v.extra_logits.doubled for v in views]))
    torch.testing.assert_close(
        merged.seg_logits.data,
        mean_softmax([v.seg_logits.data for v in views]))


def test_metric_evaluates_and_saves_each_extra_map(tmp_path):
    sample = _predict(_model(return_doubled=True))
    sample.set_metainfo(dict(img_path='/data/img7.jpg'))
    metric = IoUMetric(per_learner=True, output_dir=str(tmp_path))
    metric.dataset_meta = dict(classes=tuple('abcde'))
    metric.process({}, [sample.to_dict()])
    result = metric.evaluate(1)
    # doubled logits have the same arg-max: the same mIoU, under its name
    assert result['doubled_mIoU'] == result['mIoU']
    saved = np.asarray(Image.open(tmp_path / 'doubled' / 'img7.png'))
    assert (saved == sample.pred_sem_seg.data[0].numpy()).all()


def test_head_without_extra_maps_refuses_the_switch():
    model = _model(head='FCNHead', return_learners=True)
    with pytest.raises(ValueError, match='test_cfg.return_learners asks for '
                       'extra maps that FCNHead does not predict'):
        _predict(model)
