"""``ops.recomputed`` and the modules that use it: activations recomputed in
backward equal the kept ones in value, gradient and batch-norm statistics,
and are not kept."""
import copy
from typing import Tuple

import pytest
import torch

from mmseg.models import ops
from mmseg.models.backbones import ResNetV1c
from mmseg.models.backbones.resnet import Bottleneck
from mmseg.models.necks import FPNT
from mmseg.models.utils.swin_block import SwinBlock
from mmseg.utils import glibc_heap

FAST = ['sdpa', 'cpu']


def _saved_numel(fn, *inputs) -> Tuple[int, torch.Tensor]:
    """Elements autograd keeps for backward while ``fn`` runs (parameters
    excluded), and its output."""
    saved = []

    def pack(tensor):
        if not isinstance(tensor, torch.nn.Parameter):
            saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    return sum(saved), out


def _bottleneck() -> Bottleneck:
    torch.manual_seed(0)
    downsample = torch.nn.Sequential(
        torch.nn.Conv2d(16, 32, 1, bias=False), torch.nn.BatchNorm2d(32))
    block = Bottleneck(16, 8, downsample=downsample).train()
    for m in block.modules():  # non-trivial statistics to compare
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return block


@pytest.mark.parametrize('name', FAST)
def test_recomputed_block_equals_kept_in_value_gradient_and_statistics(name):
    kept, recomputing = _bottleneck(), _bottleneck()
    recomputing.with_cp = True
    x = torch.randn(2, 16, 12, 12)
    results = []
    for block in (kept, recomputing):
        inp = x.clone().requires_grad_()
        with ops.implementation(name):
            numel, out = _saved_numel(block, inp)
            out.square().sum().backward()
        results.append((numel, out, inp.grad, block))
    (kept_numel, out_a, grad_a, a), (cp_numel, out_b, grad_b, b) = results
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(grad_b, grad_a)
    for (key, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, msg=key)
    # running statistics moved once, as without recomputation
    for (key, buf_a), buf_b in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(buf_b, buf_a, msg=key, rtol=0, atol=0)
    assert cp_numel < kept_numel / 3


def test_recomputed_draws_the_same_random_values():
    dropout = torch.nn.Dropout(0.5)

    def branch(x):
        return dropout(x * 2).exp()

    x = torch.randn(64, 64)
    grads = []
    for enabled in (False, True):
        inp = x.clone().requires_grad_()
        torch.manual_seed(3)
        with ops.implementation('sdpa'):
            ops.recomputed(branch, inp, enabled=enabled).sum().backward()
        grads.append(inp.grad)
    torch.testing.assert_close(grads[1], grads[0])
    assert (grads[0] == 0).any()  # dropout was active


def test_reference_and_no_grad_keep_the_plain_call():
    block = _bottleneck()
    block.with_cp = True
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    with ops.implementation('reference'):
        kept, _ = _saved_numel(block, x)
    block.with_cp = False
    plain, _ = _saved_numel(block, x)
    assert kept == plain
    with torch.no_grad():
        calls = []
        ops.recomputed(lambda t: calls.append(t) or t, x)
    assert len(calls) == 1


@pytest.mark.parametrize('name', FAST)
def test_swin_block_recomputes_its_attention_branch(name):
    torch.manual_seed(0)
    kept = SwinBlock(32, 4, window_size=4, shift=True).train()
    recomputing = copy.deepcopy(kept)
    recomputing.recompute_attention = True
    x = torch.randn(2, 64, 32)
    results = []
    for block in (kept, recomputing):
        inp = x.clone().requires_grad_()
        with ops.implementation(name):
            numel, out = _saved_numel(block, inp, (8, 8))
            out.square().sum().backward()
        results.append((numel, out, inp.grad))
    (kept_numel, out_a, grad_a), (cp_numel, out_b, grad_b) = results
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(grad_b, grad_a)
    for pa, pb in zip(kept.parameters(), recomputing.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad)
    # the attention branch keeps at least q, k, v and the attention output
    assert kept_numel - cp_numel >= 4 * x.numel()


def test_recompute_arguments_are_checked():
    with pytest.raises(ValueError, match='recompute_stages'):
        ResNetV1c(depth=50, recompute_stages=(4, ))
    with pytest.raises(ValueError, match='recompute_levels'):
        FPNT([8, 16], 16, 2, recompute_levels=(2, ))


def test_resnet_recompute_stages_choose_the_blocks():
    net = ResNetV1c(depth=50, recompute_stages=(0, 1))
    assert all(b.with_cp for b in (*net.layer1, *net.layer2))
    assert not any(b.with_cp for b in (*net.layer3, *net.layer4))


def test_heap_release_can_be_disabled(monkeypatch):
    monkeypatch.setenv(glibc_heap.DISABLE_ENV, '1')
    assert glibc_heap.release_freed_heap() is False
    assert glibc_heap.glibc() is None


def test_heap_is_released_once_per_backward(monkeypatch):
    from mmseg.models.ops import recompute
    releases = []
    monkeypatch.setattr(recompute, 'release_freed_heap',
                        lambda: releases.append(1) or True)
    block = _bottleneck()
    block.with_cp = True
    blocks = torch.nn.Sequential(block, copy.deepcopy(block))
    for step in (1, 2):
        x = torch.randn(2, 16, 12, 12, requires_grad=True)
        with ops.implementation('cpu'):
            blocks[1](blocks[0](x)[:, :16]).sum().backward()
        assert len(releases) == step
