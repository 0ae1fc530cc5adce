"""A training step of the published models on CPU, and the segmentor's
inference modes."""
import pytest
import torch
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from tests.test_models.model_utils import build_model

R50_WS = 'senformer_configs/senformer/ade20k/' \
    'senformer_fpnt_r50_512x512_160k_ade20k.py'
SWIN_T_NWS = 'senformer_configs/senformer/ade20k/' \
    'senformerNWS_fpnt_swin_tiny_512x512_160k_ade20k.py'
TOY = 'senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py'


def _batch(num_classes, size=64, batch=2):
    g = torch.Generator().manual_seed(0)
    inputs = [
        torch.randint(0, 256, (3, size, size), generator=g,
                      dtype=torch.uint8) for _ in range(batch)
    ]
    samples = []
    for _ in range(batch):
        label = torch.randint(0, num_classes, (1, size, size), generator=g)
        label[:, :4] = 255
        samples.append(
            SegDataSample(
                gt_sem_seg=PixelData(data=label),
                metainfo=dict(
                    img_shape=(size, size), ori_shape=(size, size))))
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('config', [R50_WS, SWIN_T_NWS])
def test_training_step_losses(config):
    torch.manual_seed(0)
    model = build_model(
        config, **{'data_preprocessor.size': (64, 64)}).train()
    data = model.data_preprocessor(_batch(model.num_classes), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {
        'decode.loss_classic', 'decode.loss_seg', 'decode.acc_seg',
        'aux.loss_ce', 'aux.acc_seg'
    }
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    learner = model.decode_head.learners[3]
    assert learner.queries.grad is not None
    assert torch.isfinite(learner.queries.grad).all()
    # the auxiliary head reads the backbone's stage-2 map
    assert model.aux_head_input == 'backbone'
    assert model.auxiliary_head.convs[0].conv.weight.grad is not None


def test_auxiliary_head_weight():
    model = build_model(R50_WS)
    assert model.auxiliary_head.loss_decode.loss_weight == 0.4


def test_predict_whole_and_slide_agree_on_one_window():
    torch.manual_seed(0)
    model = build_model(TOY).eval()
    data = model.data_preprocessor(_batch(model.num_classes, size=64))
    with torch.no_grad():
        whole = model(**data, mode='predict')
        model.test_cfg = dict(mode='slide', crop_size=(64, 64),
                              stride=(48, 48))
        slide = model(**data, mode='predict')
    for a, b in zip(whole, slide):
        assert a.pred_sem_seg.data.shape == (1, 64, 64)
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data)


def test_slide_inference_covers_larger_images():
    model = build_model(
        TOY, **{'test_cfg': dict(mode='slide', crop_size=(32, 32),
                                  stride=(24, 24))}).eval()
    data = model.data_preprocessor(_batch(model.num_classes, size=64))
    with torch.no_grad():
        out = model(**data, mode='predict')
    assert out[0].seg_logits.data.shape == (model.num_classes, 64, 64)


def test_predict_restores_original_size_and_learners():
    model = build_model(
        TOY, **{'test_cfg': dict(mode='whole', return_learners=True)}).eval()
    batch = _batch(model.num_classes, size=64, batch=1)
    batch['data_samples'][0].set_metainfo(dict(ori_shape=(50, 70)))
    data = model.data_preprocessor(batch)
    with torch.no_grad():
        sample = model(**data, mode='predict')[0]
    assert sample.seg_logits.data.shape == (model.num_classes, 50, 70)
    assert sample.pred_sem_seg.data.shape == (1, 50, 70)
    assert sorted(sample.extra_logits.keys()) == [
        f'learner{i}' for i in range(4)]
    assert all(m.shape == (model.num_classes, 50, 70)
               for m in sample.extra_logits.values())


def test_tensor_mode_returns_head_output():
    model = build_model(TOY).eval()
    with torch.no_grad():
        learners, ensemble = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert len(learners) == 4 and ensemble.shape[2:] == (16, 16)
