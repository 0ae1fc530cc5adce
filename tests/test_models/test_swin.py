"""Swin backbone: any input size, official-weight conversion, freezing."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg.models.backbones import SwinTransformer
from mmseg.models.utils import PatchMerging, swin_official_to_mmseg
from mmseg.models.utils.window_attention import ShiftWindowMSA


def _tiny_swin(**kwargs):
    cfg = dict(
        embed_dims=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        drop_path_rate=0.)
    cfg.update(kwargs)
    return SwinTransformer(**cfg)


@pytest.mark.parametrize('size', [(64, 64), (70, 90), (33, 17)])
def test_any_input_size(size):
    model = _tiny_swin().eval()
    outs = model(torch.randn(1, 3, *size))
    h, w = -(-size[0] // 4), -(-size[1] // 4)
    for i, out in enumerate(outs):
        assert out.shape == (1, 16 * 2**i, h, w)
        h, w = -(-h // 2), -(-w // 2)


def _official_merging(x, hw, norm, reduction):
    """Patch merging as the official Swin release computes it."""
    B, L, C = x.shape
    H, W = hw
    x = x.view(B, H, W, C)
    x0, x1 = x[:, 0::2, 0::2], x[:, 1::2, 0::2]
    x2, x3 = x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)
    return reduction(norm(x))


def test_converted_patch_merging_matches_official():
    torch.manual_seed(0)
    C = 6
    norm, reduction = nn.LayerNorm(4 * C), nn.Linear(4 * C, 2 * C, bias=False)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    official = {
        'layers.0.downsample.norm.weight': norm.weight.data,
        'layers.0.downsample.norm.bias': norm.bias.data,
        'layers.0.downsample.reduction.weight': reduction.weight.data,
    }
    converted = swin_official_to_mmseg(official)
    ours = PatchMerging(C, 2 * C)
    ours.load_state_dict({
        k.replace('stages.0.downsample.', ''): v
        for k, v in converted.items()
    })
    x = torch.randn(2, 8 * 6, C)
    expected = _official_merging(x, (8, 6), norm, reduction)
    actual, hw = ours(x, (8, 6))
    assert hw == (4, 3)
    torch.testing.assert_close(actual, expected)


def test_official_key_renaming():
    official = {
        'patch_embed.proj.weight': torch.zeros(1),
        'layers.1.blocks.0.attn.qkv.weight': torch.zeros(1),
        'layers.1.blocks.0.attn.relative_position_bias_table': torch.zeros(1),
        'layers.1.blocks.0.mlp.fc1.bias': torch.zeros(1),
        'layers.1.blocks.0.mlp.fc2.weight': torch.zeros(1),
        'layers.1.blocks.0.norm1.weight': torch.zeros(1),
        'head.weight': torch.zeros(1),
        'norm.weight': torch.zeros(1),
    }
    assert sorted(swin_official_to_mmseg(official)) == sorted([
        'patch_embed.projection.weight',
        'stages.1.blocks.0.attn.w_msa.qkv.weight',
        'stages.1.blocks.0.attn.w_msa.relative_position_bias_table',
        'stages.1.blocks.0.ffn.layers.0.0.bias',
        'stages.1.blocks.0.ffn.layers.1.weight',
        'stages.1.blocks.0.norm1.weight',
    ])


def _naive_shift_window_attention(module, x, hw):
    """Explicit matmul + softmax reference of the shifted window MSA."""
    msa = module.w_msa
    B, L, C = x.shape
    H, W = hw
    w, s = module.window_size, module.shift_size
    x = x.view(B, H, W, C)
    pb, pr = (-H) % w, (-W) % w
    x = F.pad(x, (0, 0, 0, pr, 0, pb))
    Hp, Wp = H + pb, W + pr
    x = torch.roll(x, (-s, -s), (1, 2))
    img = torch.zeros(Hp, Wp)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[hs, ws] = cnt
            cnt += 1
    win = x.view(B, Hp // w, w, Wp // w, w, C).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(-1, w * w, C)
    regions = img.view(Hp // w, w, Wp // w, w).permute(0, 2, 1, 3)
    regions = regions.reshape(-1, w * w)
    mask = (regions[:, None, :] != regions[:, :, None]).float() * -100
    qkv = msa.qkv(win).view(win.shape[0], w * w, 3, msa.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * msa.scale) @ k.transpose(-2, -1)
    attn = attn + msa.relative_position_bias()[None]
    nW = mask.shape[0]
    attn = attn.view(B, nW, msa.num_heads, w * w, w * w) + mask[None, :, None]
    attn = attn.view(-1, msa.num_heads, w * w, w * w).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(-1, w * w, C)
    out = msa.proj(out).view(B, Hp // w, Wp // w, w, w, C)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
    out = torch.roll(out, (s, s), (1, 2))[:, :H, :W]
    return out.reshape(B, L, C)


@pytest.mark.parametrize('hw', [(8, 8), (10, 13)])
def test_fused_shifted_window_attention_matches_explicit(hw):
    torch.manual_seed(0)
    module = ShiftWindowMSA(16, 2, window_size=4, shift_size=2)
    nn.init.normal_(module.w_msa.relative_position_bias_table)
    x = torch.randn(2, hw[0] * hw[1], 16, requires_grad=True)
    out = module(x, hw)
    ref = _naive_shift_window_attention(module, x, hw)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, module.w_msa.relative_position_bias_table],
                                grad_out)
    ref_grads = torch.autograd.grad(
        ref, [x, module.w_msa.relative_position_bias_table], grad_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_frozen_stages():
    model = _tiny_swin(frozen_stages=1)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    assert not model.stages[0].training and model.stages[1].training


def test_pretrained_official_weights_load(tmp_path):
    source = _tiny_swin()
    official = {}
    for key, value in source.state_dict().items():
        if 'relative_position_index' in key or key.startswith('norm'):
            continue
        name = key.replace('stages', 'layers').replace(
            'attn.w_msa.', 'attn.').replace('ffn.layers.0.0.', 'mlp.fc1.')
        name = name.replace('ffn.layers.1.', 'mlp.fc2.').replace(
            'patch_embed.projection', 'patch_embed.proj')
        official[name] = torch.randn_like(value)
    path = tmp_path / 'swin_official.pth'
    torch.save(dict(model=official), path)
    model = _tiny_swin(pretrained=str(path))
    model.init_weights()
    converted = swin_official_to_mmseg(official)
    state = model.state_dict()
    for key, value in converted.items():
        torch.testing.assert_close(state[key], value)


def test_bad_stage_arguments_are_named():
    import pytest
    from mmseg.models.backbones import SwinTransformer
    with pytest.raises(ValueError, match='one value per stage'):
        SwinTransformer(depths=(2, 2), num_heads=(3, 6, 12))
