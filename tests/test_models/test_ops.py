"""Every fast implementation of the model's operations equals the plain
reference, in value and gradient, and the switch chooses among them."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmseg.models import ops
from mmseg.models.decode_heads import SenFormer, SenFormerNWS
from mmseg.models.utils import CrossAttention, SwinFFN
from mmseg.models.utils.window_attention import ShiftWindowMSA

FAST = ['sdpa', 'cpu']


def _head_strided(tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """``B x N x C`` -> ``B x heads x N x d`` view, as the learners' keys."""
    B, N, C = tokens.shape
    return tokens.view(B, N, heads, C // heads).transpose(1, 2)


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad)


def _assert_same_value_and_gradient(fast_fn, plain_fn, inputs):
    inputs = [t.detach().requires_grad_() for t in inputs]
    fast, plain = fast_fn(*inputs), plain_fn(*inputs)
    torch.testing.assert_close(fast, plain)
    grad = torch.randn_like(plain)
    for a, b in zip(_grads(fast, inputs, grad), _grads(plain, inputs, grad)):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------
# the switch


def test_switch_scopes_and_restores():
    x = torch.zeros(2)
    with ops.implementation('auto'):
        assert ops.implementation_for(x) == 'cpu'
        assert ops.implementation_for(x.bfloat16()) == 'sdpa'
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert ops.implementation_for(x) == 'sdpa'
        with ops.implementation('reference'):
            assert ops.implementation_for(x) == 'reference'
        assert ops.chosen_implementation() == 'auto'


def test_switch_rejects_unknown_names():
    with pytest.raises(ValueError, match="'fast'.*reference"):
        ops.set_implementation('fast')
    with pytest.raises(ValueError, match='unknown implementation'):
        with ops.implementation('flash'):
            pass


def test_switch_reads_the_environment(monkeypatch):
    import subprocess
    import sys
    code = ('from mmseg.models import ops; '
            'print(ops.chosen_implementation())')
    for value, expected in (('reference', 'reference'), ('sdpa', 'sdpa')):
        out = subprocess.run([sys.executable, '-c', code],
                             env=dict(__import__('os').environ,
                                      MMSEG_OPS=value),
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
    bad = subprocess.run([sys.executable, '-c', code],
                         env=dict(__import__('os').environ, MMSEG_OPS='x'),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and 'MMSEG_OPS' in bad.stderr


# ----------------------------------------------------------------------
# kernels against their references


@pytest.mark.parametrize('key_block', [4, 7, 2048])
def test_key_block_attention_equals_plain(key_block):
    """Online softmax over key blocks (including a last partial block), in
    value and in the gradients of queries, keys and values laid out as the
    learners lay them out."""
    torch.manual_seed(0)
    q = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    k, v = (_head_strided(t, 3) for t in torch.randn(
        2, 2, 18, 24, dtype=torch.float64).mul(3).unbind(0))
    _assert_same_value_and_gradient(
        lambda *t: ops.key_block_attention(*t, key_block=key_block),
        ops.plain_attention, [q, k, v])


def test_key_block_attention_gradcheck():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 4, dtype=torch.float64,
                           requires_grad=True) for n in (3, 7, 7))
    assert torch.autograd.gradcheck(
        lambda *t: ops.key_block_attention(*t, key_block=3), (q, k, v))


@pytest.mark.parametrize('key_block', [5, 2048])
def test_token_block_attention_equals_plain_projected(key_block):
    torch.manual_seed(0)
    q = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    tokens = torch.randn(2, 18, 24, dtype=torch.float64)
    weight = torch.randn(48, 24, dtype=torch.float64) / 5
    bias = torch.randn(48, dtype=torch.float64)
    _assert_same_value_and_gradient(
        lambda *t: ops.token_block_attention(*t, key_block=key_block),
        ops.plain_projected_attention, [q, tokens, weight, bias])


def test_plain_attention_equals_sdpa_with_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 9, 8, dtype=torch.float64).unbind(0)
    mask = torch.randn(4, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(
        ops.plain_attention(q, k, v, mask, 0.3),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3))


@pytest.mark.parametrize('name', FAST)
@pytest.mark.parametrize('recompute', [False, True])
def test_cross_attention_equals_reference(name, recompute):
    torch.manual_seed(0)
    q = _head_strided(torch.randn(2, 5, 24, dtype=torch.float64), 3)
    tokens = torch.randn(2, 18, 24, dtype=torch.float64)
    weight = torch.randn(48, 24, dtype=torch.float64) / 5
    bias = torch.randn(48, dtype=torch.float64)

    def fast(*t):
        with ops.implementation(name):
            return ops.cross_attention(*t, recompute=recompute)

    _assert_same_value_and_gradient(fast, ops.plain_projected_attention,
                                    [q, tokens, weight, bias])


@pytest.mark.parametrize('name', FAST)
def test_gelu_linear_equals_reference(name):
    torch.manual_seed(0)
    inputs = [torch.randn(3, 5, 8, dtype=torch.float64),
              torch.randn(4, 8, dtype=torch.float64),
              torch.randn(4, dtype=torch.float64)]

    def fast(*t):
        with ops.implementation(name):
            return ops.gelu_linear(*t)

    _assert_same_value_and_gradient(fast, ops.plain_gelu_linear, inputs)
    with ops.implementation(name):
        assert torch.autograd.gradcheck(
            ops.gelu_linear,
            [t.detach().requires_grad_() for t in inputs])


def _mlp_inputs(dtype):
    torch.manual_seed(0)
    return [torch.randn(2, 9, 8, dtype=dtype),
            torch.randn(32, 8, dtype=dtype), torch.randn(32, dtype=dtype),
            torch.randn(6, 32, dtype=dtype), torch.randn(6, dtype=dtype)]


@pytest.mark.parametrize('name', FAST)
def test_mlp_equals_reference(name):
    def fast(*t):
        with ops.implementation(name):
            return ops.mlp(*t)

    _assert_same_value_and_gradient(fast, ops.plain_mlp,
                                    _mlp_inputs(torch.float64))
    # without gradients the CPU implementation runs on chunks of tokens
    # (float32: oneDNN's fused linear + GELU where PyTorch has it)
    inputs = _mlp_inputs(torch.float32)
    with torch.no_grad():
        expected = ops.plain_mlp(*inputs)
        with ops.implementation(name):
            torch.testing.assert_close(fast(*inputs), expected)
        torch.testing.assert_close(
            ops.chunked_mlp(*inputs, token_chunk=4), expected)
        no_bias = inputs[:2] + [None] + inputs[3:4] + [None]
        torch.testing.assert_close(
            ops.chunked_mlp(*no_bias, token_chunk=5),
            ops.plain_mlp(*no_bias))
    # in training, on chunks of 4 and 5 tokens, hidden recomputed
    for token_chunk in (4, 5):
        _assert_same_value_and_gradient(
            lambda *t: ops.recomputed_mlp(*t, token_chunk=token_chunk),
            ops.plain_mlp, _mlp_inputs(torch.float64))
    double = _mlp_inputs(torch.float64)
    _assert_same_value_and_gradient(
        lambda x, w1, w2: ops.recomputed_mlp(x, w1, None, w2, None, 4),
        lambda x, w1, w2: ops.plain_mlp(x, w1, None, w2, None),
        [double[0], double[1], double[3]])


@pytest.mark.parametrize('shift', [False, True])
def test_window_attention_in_chunks_equals_reference(shift):
    """Inference attends windows chunk by chunk: 64 windows of 49 tokens
    are two chunks by default, 13 with chunks of 5 windows."""
    torch.manual_seed(0)
    attn = ShiftWindowMSA(16, 2, 7, shift_size=3 if shift else 0).eval()
    torch.nn.init.normal_(attn.w_msa.relative_position_bias_table)
    tokens = torch.randn(1, 56 * 56, 16)
    with torch.no_grad():
        with ops.implementation('reference'):
            expected = attn(tokens, (56, 56))
        with ops.implementation('cpu'):
            torch.testing.assert_close(attn(tokens, (56, 56)), expected)
        windows = torch.randn(2, 64, 49, 16)
        whole = attn.w_msa(windows)
        with ops.implementation('cpu'):
            chunked = ops.over_chunks(
                lambda some: attn.w_msa(windows[:, some]), windows,
                num_items=64, tokens_per_item=49, chunk_tokens=5 * 49)
    torch.testing.assert_close(chunked, whole)


@pytest.mark.parametrize('name', FAST)
def test_pointwise_conv_equals_conv2d(name):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    weight = torch.randn(4, 6, 1, 1, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)

    def fast(*t):
        with ops.implementation(name):
            return ops.pointwise_conv(*t)

    _assert_same_value_and_gradient(fast, F.conv2d, [x, weight, bias])


def test_swin_ffn_fused_equals_sequential():
    torch.manual_seed(0)
    ffn = SwinFFN(8, 32).double().train()
    x = torch.randn(2, 10, 8, dtype=torch.float64, requires_grad=True)
    fused, plain = ffn(x), ffn.layers(x)
    torch.testing.assert_close(fused, plain)
    grad = torch.randn_like(plain)
    params = [x, *ffn.parameters()]
    for a, b in zip(_grads(fused, params, grad), _grads(plain, params, grad)):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------
# the learners on every implementation


def _head(head_cls, recompute_levels=(0, 1, 2, 3)):
    torch.manual_seed(0)
    head = head_cls(
        num_heads=2,
        branch_depth=3,
        in_channels=[8] * 4,
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=4,
        num_classes=3,
        recompute_levels=recompute_levels).double()
    for learner in head.learners:
        torch.nn.init.normal_(learner.queries)
    return head


def _feats():
    torch.manual_seed(1)
    return [
        torch.randn(2, 8, 9 // 2**i + 1, 7 // 2**i + 1, dtype=torch.float64)
        for i in range(4)
    ]


def _head_loss(head, feats):
    logits, ensemble = head(feats)
    return ensemble.pow(2).sum() + sum(x.sin().sum() for x in logits)


@pytest.mark.parametrize('name', FAST)
@pytest.mark.parametrize('recompute_levels', [(), (0, 1, 2, 3)])
@pytest.mark.parametrize('head_cls', [SenFormer, SenFormerNWS])
def test_learners_equal_reference(head_cls, recompute_levels, name):
    head = _head(head_cls, recompute_levels)
    feats = [f.requires_grad_() for f in _feats()]
    params = feats + list(head.parameters())
    results = []
    for impl in (name, 'reference'):
        with ops.implementation(impl):
            results.append(torch.autograd.grad(_head_loss(head, feats),
                                               params, allow_unused=True))
    for a, b in zip(*results):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b)


def _saved_numel(head, feats):
    """Elements autograd keeps for backward over the head's forward."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _head_loss(head, feats)
    return sum(saved), loss


@pytest.mark.parametrize('name', FAST)
@pytest.mark.parametrize('head_cls', [SenFormer, SenFormerNWS])
def test_recomputed_keys_values_are_not_kept(head_cls, name):
    """A recomputing learner keeps neither its keys nor its values for
    backward (at least ``2 x B x HW x C`` elements per block fewer) and
    projects them again in backward: one ``C -> 2C`` projection (an
    ``addmm``) per block, which a keeping learner's backward has none of."""
    feats = [f.requires_grad_() for f in _feats()]
    counts = {}
    for levels in ((), (0, 1, 2, 3)):
        head = _head(head_cls, levels)
        with ops.implementation(name):
            numel, loss = _saved_numel(head, feats)
            with FlopCounterMode(display=False) as counter:
                loss.backward()
        projection_flops = sum(
            flops for op, flops in counter.get_flop_counts()['Global'].items()
            if 'addmm' in str(op))
        counts[levels] = numel, projection_flops
    (kept, kept_flops), (recomputed, recomputed_flops) = counts.values()
    projections = sum(
        len(learner.layers) * feat[0, 0].numel() * 2
        for learner, feat in zip(head.learners, feats))
    assert kept - recomputed >= 2 * 8 * projections
    # the CPU MLPs recompute their hidden activations in backward, whether
    # the keys and values are kept or not
    assert kept_flops == 0 or name == 'cpu'
    assert recomputed_flops - kept_flops == 2 * 8 * 16 * projections


def test_flops_are_counted_on_the_reference_operations():
    """Work the fast paths redo in backward (scores, keys and values) is not
    the model's: the count is the same whatever the implementation."""
    from mmseg.models.utils.flops import count_flops
    head = _head(SenFormerNWS)
    feats = [f.requires_grad_() for f in _feats()]

    def step():
        _head_loss(head, feats).backward()

    with ops.implementation('reference'):
        with FlopCounterMode(display=False) as counter:
            step()
    assert counter.get_total_flops() > 0
    for name in FAST:
        with ops.implementation(name):
            assert count_flops(step)[0] == counter.get_total_flops()


def test_export_takes_the_reference_operations():
    cross = CrossAttention(8, 2, recompute_keys_values=True).eval()

    class Wrapper(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.cross = cross

        def forward(self, queries, tokens):
            return self.cross(queries, tokens)

    inputs = (torch.randn(1, 3, 8), torch.randn(1, 6, 8))
    program = torch.export.export(Wrapper(), inputs)
    torch.testing.assert_close(program.module()(*inputs), cross(*inputs))
    assert 'scaled_dot_product' not in str(program.graph)
