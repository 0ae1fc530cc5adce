"""tools/deployment/export.py and mmseg.apis.export: the toy SenFormer as a
torch.export program and as ONNX, checked against PyTorch."""
import importlib.util
import io
import os
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn

from conftest import REPO_ROOT, run_cli

TOY = 'senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py'
HAS_ONNX = all(
    importlib.util.find_spec(m) is not None for m in ('onnx', 'onnxscript'))
HAS_ORT = importlib.util.find_spec('onnxruntime') is not None



@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """The toy model with class queries that make its classes differ
    (random SenFormer weights score every class alike), and its
    checkpoint."""
    from mmseg.apis import init_model
    from mmseg.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = init_model(osp.join(REPO_ROOT, TOY))
    with torch.no_grad():
        for learner in model.decode_head.learners:
            learner.queries.normal_()
    path = tmp_path_factory.mktemp('toy') / 'toy.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return model, path


def _scores(model, image):
    from mmseg.apis.export import ScoresFromImage
    with torch.no_grad():
        return ScoresFromImage(model).eval()(image)


def test_export_traces_only_the_plain_path(toy, tmp_path, monkeypatch):
    """The key-block kernels and the custom autograd functions stay out of
    the exported graph, although eager inference on the CPU uses them."""
    from mmseg.apis.export import export_model
    attention = importlib.import_module('mmseg.models.ops.attention')
    gelu_linear = importlib.import_module('mmseg.models.ops.gelu_linear')
    calls = []
    for module, name in ((attention, '_KeyBlockAttention'),
                         (attention, '_TokenBlockAttention'),
                         (gelu_linear, '_GeluLinear')):
        function = getattr(module, name)
        original = function.apply

        def counted(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(function, 'apply', counted)
    model, _ = toy
    image = torch.randn(1, 3, 64, 64)
    _scores(model, image)
    assert '_KeyBlockAttention' in calls  # eager CPU inference: fast path
    calls.clear()
    out = tmp_path / 'toy.pt2'
    checks = export_model(model, str(out), 'exported-program', (64, 64),
                          check=False)
    assert calls == [] and checks == []
    program = torch.export.load(str(out))
    targets = {str(node.target) for node in program.graph.nodes}
    # the reference operations: attention written as matmul + softmax
    assert any('softmax' in t for t in targets), targets
    assert not any('scaled_dot_product' in t for t in targets), targets
    assert torch.allclose(program.module()(image), _scores(model, image),
                          atol=1e-4)


@pytest.mark.slow
def test_export_tool_writes_a_checked_exported_program(toy, tmp_path):
    _, checkpoint = toy
    out = tmp_path / 'toy.pt2'
    proc = run_cli(sys.executable, 'tools/deployment/export.py', TOY,
                   checkpoint, '--format', 'exported-program', '--out', out,
                   '--shape', '64', '96')
    # (after mmengine's line on loading the checkpoint)
    lines = proc.stdout.strip().splitlines()
    start = [i for i, line in enumerate(lines)
             if line.startswith('exported ')]
    assert len(start) == 1, proc.stdout
    report = lines[start[0]:]
    assert report[0].startswith(f'exported exported-program (64 x 96) to '
                                f'{out}'), proc.stdout
    assert len(report) == 2 and 'scores 1x5x64x96' in report[1] and \
        'arg-max equal on 100.00 % of the pixels' in report[1], proc.stdout
    # what was written is the model: same scores as PyTorch
    model, _ = toy
    image = torch.randn(1, 3, 64, 96)
    exported = torch.export.load(str(out)).module()
    with torch.no_grad():
        torch.testing.assert_close(exported(image), _scores(model, image),
                                   atol=1e-4, rtol=1e-4)
    assert os.listdir(tmp_path) == ['toy.pt2']  # no temporary file left


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason='onnx and onnxscript are not '
                    'installed (pip install onnx onnxscript onnxruntime)')
def test_export_tool_writes_onnx_checked_with_onnxruntime(toy, tmp_path):
    _, checkpoint = toy
    out = tmp_path / 'toy.onnx'
    proc = run_cli(sys.executable, 'tools/deployment/export.py', TOY,
                   checkpoint, '--format', 'onnx', '--out', out, '--shape',
                   '64', '64')
    assert f'exported onnx (64 x 64) to {out}' in proc.stdout
    import onnx
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ['inputs']
    assert [o.name for o in graph.output] == ['scores']
    if not HAS_ORT:
        assert 'not checked: onnxruntime is not installed' in proc.stdout
        return
    assert 'scores 1x5x64x64' in proc.stdout and \
        'arg-max equal on 100.00 %' in proc.stdout, proc.stdout
    import onnxruntime
    session = onnxruntime.InferenceSession(str(out))
    model, _ = toy
    image = torch.randn(1, 3, 64, 64)
    (scores, ) = session.run(None, {'inputs': image.numpy()})
    torch.testing.assert_close(torch.from_numpy(scores),
                               _scores(model, image), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_dynamic_export_is_checked_at_another_size(toy, tmp_path):
    """The FPNT window partition fixes the number of windows at trace time:
    a "dynamic" SenFormer program fails at a size with other window counts,
    and the check says so instead of writing it."""
    from mmseg.apis.export import ExportError, export_model
    model, _ = toy
    out = tmp_path / 'toy.pt2'
    with pytest.raises(ExportError, match=r'does not run at 96 x 128 .*'
                       r'number of attention windows.*without --dynamic.*'
                       r'not written'):
        export_model(model, str(out), 'exported-program', (64, 64),
                     dynamic=True)
    assert os.listdir(tmp_path) == []


class _DisagreeingSegmentor(nn.Module):
    """Scores that change sign on the plain (export) path."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def encode_decode(self, inputs, metas):
        from mmseg.models import ops
        sign = -1. if ops.implementation_for(inputs) == 'reference' else 1.
        return inputs[:, :2] * self.scale * sign


def test_a_disagreeing_export_fails_and_writes_nothing(tmp_path):
    from mmseg.apis.export import ExportError, export_model
    out = tmp_path / 'bad.pt2'
    with pytest.raises(ExportError, match=r'disagrees with PyTorch at 32 x '
                       r'32: arg-max equal on .* % of the pixels \(needs '
                       r'99.9 %\).*not written'):
        export_model(_DisagreeingSegmentor(), str(out), 'exported-program',
                     (32, 32))
    assert os.listdir(tmp_path) == []


def test_an_existing_file_survives_a_failed_export(tmp_path):
    from mmseg.apis.export import ExportError, export_model
    out = tmp_path / 'model.pt2'
    out.write_bytes(b'previous export')
    with pytest.raises(ExportError):
        export_model(_DisagreeingSegmentor(), str(out), 'exported-program',
                     (32, 32))
    assert out.read_bytes() == b'previous export'


@pytest.mark.parametrize('args, culprit', [
    (['no_such_config.py', 'none'], 'no_such_config.py'),
    ([TOY, 'no_such.pth'], 'no_such.pth'),
    ([TOY, 'none', '--shape', '8', '64'], '--shape 8 64'),
    ([TOY, 'none', '--shape', '40', '64', '--dynamic'], 'multiple of 32'),
    ([TOY, 'none', '--out', 'no_such_dir/x.pt2'], 'no_such_dir'),
    ([TOY, 'none', '--cfg-options', 'model.no_such_key=1'], 'no_such_key'),
])
def test_bad_input_gives_one_line(args, culprit, tmp_path):
    if '--out' not in args:
        args = args + ['--out', str(tmp_path / 'x.pt2')]
    from mmseg.cli import run
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'deployment'))
    try:
        import export as tool
    finally:
        sys.path.pop(0)
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        from contextlib import redirect_stderr
        with redirect_stderr(err):
            try:
                code = run(tool.main,
                           args + ['--format', 'exported-program'])
            except SystemExit as e:
                code = e.code
    finally:
        os.chdir(cwd)
    message = err.getvalue().strip().splitlines()[-1] if err.getvalue() \
        else str(code)
    assert code not in (0, None)
    assert message.startswith('error: ') or str(code).startswith('error: ')
    assert culprit in message or culprit in str(code), (message, code)
    assert not (tmp_path / 'x.pt2').exists()
