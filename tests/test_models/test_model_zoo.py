"""Every published config builds with the published parameter counts and
checkpoint layout."""
import json
import os
import os.path as osp

import pytest
import torch

from tests.conftest import SPEC
from tests.test_models.model_utils import build_model


def _seed_configs():
    with open(osp.join(SPEC, 'seed_configs.json')) as f:
        return sorted(json.load(f))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('config', _seed_configs())
def test_parameter_count(config):
    with open(osp.join(SPEC, 'param_counts.json')) as f:
        expected = json.load(f)[osp.basename(config)[:-3]]
    model = build_model(config, device='meta')
    head = type(model.decode_head).__name__
    assert head == ('SenFormer'
                    if expected['weight_sharing'] else 'SenFormerNWS')
    assert _count(model) == expected['params_total']
    assert _count(model) - _count(model.auxiliary_head) == \
        expected['params_without_auxiliary_head']


def _key_files():
    return sorted(os.listdir(osp.join(SPEC, 'state_dict_keys')))


def _shape(tensor: torch.Tensor) -> str:
    return 'x'.join(map(str, tensor.shape)) if tensor.dim() else 'scalar'


@pytest.mark.parametrize('key_file', _key_files())
def test_state_dict_layout(key_file):
    with open(osp.join(SPEC, 'state_dict_keys', key_file)) as f:
        lines = f.read().splitlines()
    config = next(line.split(': ', 1)[1] for line in lines
                  if line.startswith('# config:'))
    expected = dict(line.split() for line in lines if not line.startswith('#'))
    model = build_model(config, device='meta')
    ours = {k: _shape(v) for k, v in model.state_dict().items()}
    assert sorted(ours) == sorted(expected)
    assert ours == expected


def test_relative_position_index_matches_swin():
    """The buffer is compared as a value by the published checkpoints."""
    model = build_model(
        'senformer_configs/senformer/ade20k/'
        'senformer_fpnt_swin_tiny_512x512_160k_ade20k.py')
    index = model.backbone.stages[0].blocks[0].attn.w_msa \
        .relative_position_index
    # pair (token 0 = (0, 0), token 1 = (0, 1)): offsets (0, -1) + 6
    assert index.shape == (49, 49)
    assert index[0, 0].item() == 6 * 13 + 6
    assert index[0, 1].item() == 6 * 13 + 5
    assert index[1, 0].item() == 6 * 13 + 7
    assert index[0, 7].item() == 5 * 13 + 6
    assert index.max().item() == 13 * 13 - 1
