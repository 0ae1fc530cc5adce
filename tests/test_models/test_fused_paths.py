"""The fused fast paths equal plain reference computations, in value and
gradient (issue: performance with identical outputs)."""
import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from mmseg.models.decode_heads import SenFormer, SenFormerNWS
from mmseg.models.utils import SwinFFN, attention
from mmseg.models.utils.gelu_linear import gelu_linear


def test_gelu_linear_gradcheck():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_linear, (hidden, weight, bias))


def test_swin_ffn_fused_equals_sequential():
    torch.manual_seed(0)
    ffn = SwinFFN(8, 32).double().train()
    x = torch.randn(2, 10, 8, dtype=torch.float64, requires_grad=True)
    fused = ffn(x)
    plain = ffn.layers(x)
    torch.testing.assert_close(fused, plain)
    grad = torch.randn_like(plain)
    params = [x, *ffn.parameters()]
    for a, b in zip(torch.autograd.grad(fused, params, grad),
                    torch.autograd.grad(plain, params, grad)):
        torch.testing.assert_close(a, b)


def _naive_learner(learner, feature):
    """A learner computed with explicit matmul + softmax attention."""
    B, C, H, W = feature.shape
    tokens = learner.norm_features(feature.flatten(2).transpose(1, 2))
    q = learner.queries.expand(B, -1, -1)

    def attend(query, key, value, heads):
        d = query.shape[-1] // heads
        split = [t.view(B, -1, heads, d).transpose(1, 2)
                 for t in (query, key, value)]
        weights = (split[0] * d**-0.5) @ split[1].transpose(-2, -1)
        out = weights.softmax(-1) @ split[2]
        return out.transpose(1, 2).reshape(B, -1, C)

    for block in learner.layers:
        for _ in range(learner.repeats):
            cross = block.cross_attn
            k, v = cross.kv(tokens).chunk(2, dim=-1)
            q = q + cross.proj(
                attend(cross.to_q(block.norm1(q)), k, v, cross.num_heads))
            attn = block.attn
            qq, kk, vv = attn.qkv(block.norm2(q)).chunk(3, dim=-1)
            q = q + attn.proj(attend(qq, kk, vv, attn.num_heads))
            mlp = block.mlp
            q = q + mlp.fc2(F.gelu(mlp.fc1(block.norm3(q))))
    embs = learner.norm_embs(q)
    return (embs @ tokens.transpose(1, 2)).view(B, -1, H, W)


@pytest.mark.parametrize('key_block', [16, 2048])
@pytest.mark.parametrize('head_cls', [SenFormer, SenFormerNWS])
def test_learners_equal_explicit_attention(monkeypatch, head_cls, key_block):
    monkeypatch.setattr(attention, 'KEY_BLOCK', key_block)
    torch.manual_seed(0)
    head = head_cls(
        num_heads=2,
        branch_depth=2,
        in_channels=[8] * 4,
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=4,
        num_classes=3).double()
    for learner in head.learners:
        torch.nn.init.normal_(learner.queries)
    feats = [
        torch.randn(2, 8, 8 // 2**i + 1, 8 // 2**i + 1,
                    dtype=torch.float64, requires_grad=True)
        for i in range(4)
    ]
    for learner, feat in zip(head.learners, feats):
        fast = learner(feat)
        naive = _naive_learner(learner, feat)
        torch.testing.assert_close(fast, naive)
        grad = torch.randn_like(fast)
        params = [feat, *learner.parameters()]
        for a, b in zip(torch.autograd.grad(fast, params, grad),
                        torch.autograd.grad(naive, params, grad)):
            torch.testing.assert_close(a, b)


def _head_strided(tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """``B x N x C`` -> ``B x heads x N x d`` view, as the learners' keys."""
    B, N, C = tokens.shape
    return tokens.view(B, N, heads, C // heads).transpose(1, 2)


@pytest.mark.parametrize('key_block', [4, 7, 2048])
def test_key_block_attention_equals_sdpa(monkeypatch, key_block):
    """Online softmax over key blocks (including a last partial block), in
    value and in the gradients of queries, keys and values laid out as the
    learners lay them out."""
    monkeypatch.setattr(attention, 'KEY_BLOCK', key_block)
    torch.manual_seed(0)
    q = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    k, v = (_head_strided(t, 3) for t in torch.randn(
        2, 2, 18, 24, dtype=torch.float64).mul(3).unbind(0))
    grad = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    blocked = attention.key_block_attention(*inputs)
    reference = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(blocked, reference)
    for a, b in zip(torch.autograd.grad(blocked, inputs, grad),
                    torch.autograd.grad(
                        F.scaled_dot_product_attention(*inputs), inputs,
                        grad)):
        torch.testing.assert_close(a, b)


def test_key_block_attention_gradcheck(monkeypatch):
    monkeypatch.setattr(attention, 'KEY_BLOCK', 3)
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 4, dtype=torch.float64,
                           requires_grad=True) for n in (3, 7, 7))
    assert torch.autograd.gradcheck(attention.key_block_attention, (q, k, v))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cross_attention_path_by_dtype(monkeypatch, dtype):
    """Full precision on CPU attends over key blocks; bfloat16 keeps the
    fused kernel, whose running sums are float32."""
    calls = []
    monkeypatch.setattr(
        attention, 'key_block_attention',
        lambda *args: calls.append(args) or F.scaled_dot_product_attention(
            *args))
    cross = attention.CrossAttention(8, 2).to(dtype)
    tokens = torch.randn(1, 6, 8, dtype=dtype)
    cross(torch.randn(1, 3, 8, dtype=dtype), cross.keys_values(tokens))
    assert len(calls) == (dtype == torch.float32)


def _head_pair(head_cls):
    """Two equal heads: one keeps every learner's keys and values, one
    recomputes them all in backward."""
    kwargs = dict(
        num_heads=2, branch_depth=3, in_channels=[8] * 4,
        in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32], channels=4,
        num_classes=3)
    torch.manual_seed(0)
    kept = head_cls(recompute_levels=(), **kwargs).double()
    for learner in kept.learners:
        torch.nn.init.normal_(learner.queries)
    recomputed = head_cls(recompute_levels=(0, 1, 2, 3), **kwargs).double()
    recomputed.load_state_dict(kept.state_dict())
    return kept, recomputed


def _attention_path(path):
    """``key_block``: the CPU kernels; ``reference``: PyTorch's attention
    (keys and values then recomputed by saved-tensor hooks)."""
    return (contextlib.nullcontext()
            if path == 'key_block' else attention.reference_attention())


def _backward_projections(head, feats, path):
    """Keys-and-values projections a recomputing head redoes in backward:
    per key block of each distinct block on the key-block path, else the
    two halves once per block."""
    total = 0
    for learner, feat in zip(head.learners, feats):
        if path == 'key_block' and learner.repeats == 1:
            key_blocks = math.ceil(feat[0, 0].numel() / attention.KEY_BLOCK)
            total += len(learner.layers) * key_blocks
        else:
            total += 2 * len(learner.layers)
    return total


@pytest.mark.parametrize('path', ['key_block', 'reference'])
@pytest.mark.parametrize('head_cls', [SenFormer, SenFormerNWS])
def test_recomputed_keys_values_give_same_gradients(monkeypatch, head_cls,
                                                    path):
    monkeypatch.setattr(attention, 'KEY_BLOCK', 16)
    kept, recomputed = _head_pair(head_cls)
    feats = [
        torch.randn(2, 8, 9 // 2**i + 1, 7 // 2**i + 1, dtype=torch.float64,
                    requires_grad=True) for i in range(4)
    ]
    grads = []
    for head in (kept, recomputed):
        with _attention_path(path):
            logits, ensemble = head(feats)
            loss = ensemble.pow(2).sum() + sum(x.sin().sum() for x in logits)
            projections = []
            real_linear = F.linear
            monkeypatch.setattr(
                F, 'linear',
                lambda *args: projections.append(1) or real_linear(*args))
            grads.append(
                torch.autograd.grad(loss,
                                    feats + list(head.learners.parameters())))
            monkeypatch.setattr(F, 'linear', real_linear)
        assert len(projections) == (_backward_projections(head, feats, path)
                                    if head is recomputed else 0)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('path', ['key_block', 'reference'])
@pytest.mark.parametrize('recompute', [False, True])
def test_recomputed_keys_values_are_not_kept(recompute, path):
    """Whole keys and values outlive forward only when not recomputed; on
    the key-block path a recomputing learner never projects them whole."""
    from torch.multiprocessing.reductions import StorageWeakRef
    kept, recomputed = _head_pair(SenFormerNWS)
    head = recomputed if recompute else kept
    projections = []
    cross_attn = head.learners[0].layers[0].cross_attn
    project = cross_attn.keys_values

    def keys_values(tokens):
        keys_values = project(tokens)
        projections.extend(
            StorageWeakRef(t.untyped_storage()) for t in keys_values)
        return keys_values

    cross_attn.keys_values = keys_values
    feats = [torch.randn(1, 8, 8, 8, dtype=torch.float64,
                         requires_grad=True) for _ in range(4)]
    with _attention_path(path):
        ensemble = head(feats)[1]
        if recompute and path == 'key_block':
            assert projections == []
        else:
            assert len(projections) == 2
            assert all(ref.expired() == recompute for ref in projections)
        ensemble.sum().backward()


@pytest.mark.parametrize('key_block', [5, 2048])
def test_token_block_attention_equals_projected_sdpa(monkeypatch, key_block):
    """Keys and values projected block by block: the same values and the
    same gradients for queries, tokens and projection."""
    monkeypatch.setattr(attention, 'KEY_BLOCK', key_block)
    torch.manual_seed(0)
    q = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    tokens = torch.randn(2, 18, 24, dtype=torch.float64)
    weight = torch.randn(48, 24, dtype=torch.float64) / 5
    bias = torch.randn(48, dtype=torch.float64)
    grad = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    inputs = [t.detach().requires_grad_() for t in (q, tokens, weight, bias)]

    def reference(q, tokens, weight, bias):
        k, v = (_head_strided(t, 3)
                for t in F.linear(tokens, weight, bias).chunk(2, dim=-1))
        return F.scaled_dot_product_attention(q, k, v)

    blocked = attention.token_block_attention(*inputs)
    torch.testing.assert_close(blocked, reference(*inputs))
    for a, b in zip(torch.autograd.grad(blocked, inputs, grad),
                    torch.autograd.grad(reference(*inputs), inputs, grad)):
        torch.testing.assert_close(a, b)


def test_flop_count_is_the_reference_attention(monkeypatch):
    """FLOPs are counted on PyTorch's attention, not on the key-block path,
    whose backward recomputes the scores (not the model's work)."""
    from mmseg.utils.flops import count_flops
    calls = []
    monkeypatch.setattr(
        attention, 'key_block_attention',
        lambda *args: calls.append(args) or F.scaled_dot_product_attention(
            *args))
    cross = attention.CrossAttention(8, 2)
    tokens = torch.randn(1, 6, 8)

    def step():
        cross(torch.randn(1, 3, 8), cross.keys_values(tokens)).sum().backward()

    flops, _ = count_flops(step)
    assert calls == []
    # per head: q k^T and attn v (2 x 3 x 6 x 4 multiply-adds each), twice
    # more in backward; the linears' FLOPs come on top
    assert flops > 3 * 2 * 2 * (2 * 3 * 6 * 4)
    step()
    assert len(calls) == 1
