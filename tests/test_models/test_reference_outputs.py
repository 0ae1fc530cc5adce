"""The model reproduces the published implementation's forward pass."""
import os.path as osp

import pytest
import torch

from tests.conftest import REFERENCE_OUTPUTS, load_detw
from tests.test_models.model_utils import build_model

SWIN_T_NWS = ('senformer_configs/senformer/ade20k/'
              'senformerNWS_fpnt_swin_tiny_512x512_160k_ade20k.py')


def _relative_error(ours: dict, ref: dict) -> float:
    scale = ref['vals'].abs().max().clamp(min=1e-12)
    return ((ours['vals'] - ref['vals']).abs().max() / scale).item()


@pytest.fixture(
    scope='module', params=['inference', 'autograd'],
    ids=['inference-path', 'autograd-path'])
def reference(request):
    """Outputs of the inference path (no autograd: key-block attention on
    CPU, fused window attention) and of the path taken under autograd
    (fused attention kernels, explicit window attention whose bias needs a
    gradient)."""
    path = osp.join(REFERENCE_OUTPUTS, 'swin_tiny_nws_224.pt')
    ref = torch.load(path, weights_only=True)
    detw = load_detw()
    model = build_model(SWIN_T_NWS).eval()
    model.load_state_dict(detw.det_state_dict(model.state_dict()))
    shape = ref['input']['shape']
    x = torch.randn(
        *shape, generator=torch.Generator().manual_seed(ref['input']['seed']))
    with torch.set_grad_enabled(request.param == 'autograd'):
        backbone = model.backbone(x)
        neck = model.neck(backbone)
        learners, ensemble = model.decode_head(neck)
        seg = model.encode_decode(x, [dict(batch_input_shape=shape[2:])])
    if request.param == 'autograd':
        assert ensemble.requires_grad
    ours = {f'backbone.{i}': t.detach() for i, t in enumerate(backbone)}
    ours.update({f'neck.{i}': t.detach() for i, t in enumerate(neck)})
    ours.update(
        {f'learner.{i}': t.detach()
         for i, t in enumerate(learners)})
    ours.update(ensemble=ensemble.detach(), encode_decode=seg.detach())
    return detw, ref, ours


def test_config_matches_reference_config(reference):
    _, ref, _ = reference
    assert ref['config'].endswith(osp.basename(SWIN_T_NWS))
    assert ref['weight_sharing'] is False


@pytest.mark.parametrize('name', [
    *(f'backbone.{i}' for i in range(4)), *(f'neck.{i}' for i in range(4)),
    *(f'learner.{i}' for i in range(4)), 'ensemble', 'encode_decode'
])
def test_fingerprint(reference, name):
    detw, ref, ours = reference
    expected = ref['outputs'][name]
    assert list(ours[name].shape) == expected['shape']
    sample = detw.sample(ours[name])
    assert torch.equal(sample['idx'], expected['idx'])
    assert _relative_error(sample, expected) < 1e-3
    for stat in ('sum', 'abssum', 'sqsum'):
        assert sample[stat] == pytest.approx(expected[stat], rel=1e-3,
                                             abs=1e-3 * expected['abssum'])


def test_prediction(reference):
    _, ref, ours = reference
    pred = ours['encode_decode'].argmax(dim=1)[0]
    expected = ref['outputs']['pred'].long()
    assert pred.shape == expected.shape
    assert (pred == expected).float().mean().item() >= 0.995
