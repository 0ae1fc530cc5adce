"""ResNet backbones: stem layout, depths, dilation, freezing."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.models.backbones import ResNetV1c


@pytest.mark.parametrize('depth,channels', [(18, (64, 128, 256, 512)),
                                            (34, (64, 128, 256, 512)),
                                            (50, (256, 512, 1024, 2048))])
def test_outputs(depth, channels):
    model = ResNetV1c(depth=depth).eval()
    outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == list(channels)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6),
                                                  (2, 3)]


def test_deep_stem_layout():
    model = ResNetV1c(depth=50)
    keys = [k for k in model.state_dict() if k.startswith('stem.')]
    assert {k.split('.')[1] for k in keys} == {'0', '1', '3', '4', '6', '7'}
    assert model.stem[0].weight.shape == (32, 3, 3, 3)
    assert model.stem[0].stride == (2, 2) and model.stem[0].bias is None
    assert model.stem[6].weight.shape == (64, 32, 3, 3)


def test_block_counts():
    model = ResNetV1c(depth=101)
    assert [len(getattr(model, f'layer{i}')) for i in range(1, 5)] == \
        [3, 4, 23, 3]


def test_dilation_and_contract_dilation():
    model = ResNetV1c(
        depth=50,
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        contract_dilation=True).eval()
    assert model.layer3[0].conv2.dilation == (1, 1)
    assert model.layer3[1].conv2.dilation == (2, 2)
    assert model.layer4[0].conv2.dilation == (2, 2)
    assert model.layer4[1].conv2.dilation == (4, 4)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 16), (8, 8), (8, 8),
                                                  (8, 8)]


def test_pytorch_style_strides_the_3x3_conv():
    model = ResNetV1c(depth=50)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)


def test_frozen_stages_and_norm_eval():
    model = ResNetV1c(depth=18, frozen_stages=1, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_invalid_depth():
    with pytest.raises(KeyError, match='invalid ResNet depth 42'):
        ResNetV1c(depth=42)


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    plain = ResNetV1c(depth=18)
    checkpointed = ResNetV1c(depth=18, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    sum(o.sum() for o in plain(x)).backward()
    sum(o.sum() for o in checkpointed(x)).backward()
    torch.testing.assert_close(plain.layer1[0].conv1.weight.grad,
                               checkpointed.layer1[0].conv1.weight.grad)


@pytest.mark.parametrize('kwargs, culprit', [
    (dict(num_stages=5), 'num_stages'),
    (dict(num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
          out_indices=(0, 1, 2, 3)), 'out_indices'),
    (dict(strides=(1, 2)), 'strides'),
    (dict(depth=50, style='keras'), 'style'),
    (dict(pretrained='x.pth', init_cfg=dict(type='Kaiming')), 'pretrained'),
])
def test_bad_arguments_are_named(kwargs, culprit):
    from mmseg.models.backbones import ResNetV1c
    with pytest.raises(ValueError, match=culprit):
        ResNetV1c(**dict(dict(depth=18), **kwargs))
