"""Command-line tools without training: --help and bad arguments of every
tool, get_flops, print_config, publish_model, analyze_logs,
download_swin_weights.sh (from a local "mirror") and the messages for
missing backbone pre-training weights."""
import glob
import hashlib
import json
import os
import os.path as osp
import sys
import textwrap

import pytest
import torch

from conftest import REPO_ROOT, run_cli

TOY = 'senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py'
PY_TOOLS = sorted(
    osp.relpath(p, REPO_ROOT)
    for p in glob.glob(osp.join(REPO_ROOT, 'tools', '**', '*.py'),
                       recursive=True) +
    glob.glob(osp.join(REPO_ROOT, 'demo', '*.py')))
SHELL_TOOLS = sorted(
    osp.relpath(p, REPO_ROOT)
    for p in glob.glob(osp.join(REPO_ROOT, 'tools', '**', '*.sh'),
                       recursive=True))



# ----------------------------------------------------------------------
# --help and wrong arguments

# Every python tool runs as __main__ in one interpreter (one start-up for
# all), with --help and with an unknown option.
_PROBE = textwrap.dedent('''
    import contextlib, io, json, runpy, sys
    results = {}
    for path in sys.argv[1:]:
        # placeholders for the positionals: argparse reports missing
        # positionals before unknown options
        for argv in (['--help'], ['x', 'x', 'x', '--no-such-option']):
            out, err = io.StringIO(), io.StringIO()
            sys.argv = [path] + argv
            code = 0
            with contextlib.redirect_stdout(out), \\
                    contextlib.redirect_stderr(err):
                try:
                    runpy.run_path(path, run_name='__main__')
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
            results[path + ' ' + argv[-1]] = [code, out.getvalue(),
                                               err.getvalue()]
    print(json.dumps(results))
''')


def test_every_python_tool_has_help_and_rejects_unknown_options():
    assert 'tools/train.py' in PY_TOOLS and 'demo/image_demo.py' in PY_TOOLS
    proc = run_cli(sys.executable, '-c', _PROBE, *PY_TOOLS)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for path in PY_TOOLS:
        code, out, err = results[path + ' --help']
        assert code == 0, f'{path} --help exited {code}: {err}'
        assert out.startswith('usage:'), f'{path} --help printed {out!r}'
        code, out, err = results[path + ' --no-such-option']
        lines = err.strip().splitlines()
        assert code != 0, f'{path} accepted --no-such-option'
        # argparse: the usage, then one line naming the culprit
        assert lines and 'error:' in lines[-1] and \
            '--no-such-option' in lines[-1], f'{path}: {err!r}'


@pytest.mark.parametrize('script', SHELL_TOOLS)
def test_shell_tools_explain_their_usage(script):
    # these run without arguments (and the installer would install)
    runs_bare = any(name in script for name in ('quickstart', 'download',
                                                'install_missing'))
    proc = run_cli('bash', script, '--help', check=False, timeout=60) \
        if runs_bare else run_cli('bash', script, check=False, timeout=60)
    if runs_bare:
        assert proc.returncode == 0
        assert proc.stdout.startswith('usage:')
    else:  # launchers need a config: without one they say how to call them
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1].startswith('usage:')


def test_missing_files_give_one_line_errors(tmp_path):
    cases = [
        ('tools/get_flops.py', 'no_such_config.py'),
        ('tools/print_config.py', 'no_such_config.py'),
        ('tools/publish_model.py', 'no_such.pth', str(tmp_path / 'o.pth')),
        ('tools/analyze_logs.py', str(tmp_path / 'no_such_dir')),
    ]
    for tool, *args in cases:
        proc = run_cli(sys.executable, tool, *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, tool
        assert 'no_such' in lines[-1] and 'Traceback' not in proc.stderr, \
            f'{tool}: {proc.stderr}'


# ----------------------------------------------------------------------
# get_flops, print_config


def test_get_flops_counts_flops_and_parameters():
    proc = run_cli(sys.executable, 'tools/get_flops.py', TOY, '--shape', '64')
    assert 'input shape' in proc.stdout and '1x3x64x64' in proc.stdout
    gflops = float(proc.stdout.split('GFLOPs')[1].split()[0])
    gmacs = float(proc.stdout.split('GMACs')[1].split()[0])
    assert gflops > 0.1 and gmacs == pytest.approx(gflops / 2, abs=0.01)
    # the parameter count is the model's, with and without the aux head
    from mmseg.apis import init_model
    model = init_model(osp.join(REPO_ROOT, TOY))
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    assert f'({total})' in proc.stdout
    assert f'({total - aux})' in proc.stdout


def test_print_config_applies_cfg_options(tmp_path):
    saved = tmp_path / 'merged.py'
    proc = run_cli(sys.executable, 'tools/print_config.py', TOY,
                   '--cfg-options', 'model.decode_head.num_classes=3',
                   '--save-path', str(saved))
    assert "type='SenFormer'" in proc.stdout
    from mmengine.config import Config
    merged = Config.fromfile(str(saved))
    assert merged.model.decode_head.num_classes == 3
    assert merged.model.auxiliary_head.num_classes == 5
    assert '_base_' not in open(saved).read()


# ----------------------------------------------------------------------
# publish_model


def test_publish_model_strips_training_state(tmp_path):
    state = {'backbone.conv.weight': torch.randn(4, 3, 1, 1)}
    meta = dict(iter=40, dataset_meta=dict(classes=('a', 'b')))
    torch.save(
        dict(meta=meta, state_dict=state, optimizer={'state': {}},
             param_schedulers=[{'last_epoch': 40}],
             message_hub={'log_scalars': {}}), tmp_path / 'iter_40.pth')
    proc = run_cli(sys.executable, 'tools/publish_model.py',
                   str(tmp_path / 'iter_40.pth'),
                   str(tmp_path / 'out' / 'toy.pth'))
    published = glob.glob(str(tmp_path / 'out' / '*'))
    assert len(published) == 1, published  # no temporary file left
    final = published[0]
    with open(final, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert osp.basename(final) == f'toy-{sha[:8]}.pth'
    assert final in proc.stdout
    loaded = torch.load(final, weights_only=True)
    assert sorted(loaded) == ['meta', 'state_dict']
    assert loaded['meta'] == meta
    torch.testing.assert_close(loaded['state_dict']['backbone.conv.weight'],
                               state['backbone.conv.weight'])
    assert os.stat(final).st_mode & 0o044  # readable by others


# ----------------------------------------------------------------------
# analyze_logs


def _write_scalars(run_dir, records):
    os.makedirs(run_dir / 'vis_data')
    with open(run_dir / 'vis_data' / 'scalars.json', 'w') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')


def test_analyze_logs_plots_a_resumed_work_dir(tmp_path, tools_on_path):
    work = tmp_path / 'work'
    _write_scalars(work / '20240101_000000',
                   [dict(loss=2.0 - 0.1 * i, lr=0.01, step=i)
                    for i in range(1, 7)] + [dict(mIoU=30.0, step=4)])
    # resumed at iteration 4: replaces the first run's 5 and 6
    _write_scalars(work / '20240101_010000',
                   [dict(loss=1.0, lr=0.01, step=i) for i in (5, 6, 7, 8)] +
                   [dict(mIoU=42.5, step=8)])
    out = tmp_path / 'curves.png'
    proc = run_cli(sys.executable, 'tools/analyze_logs.py', str(work),
                   '--keys', 'loss', 'mIoU', '--out', str(out))
    assert 'loss 1 at iter 8' in proc.stdout
    assert 'mIoU 42.5 at iter 8' in proc.stdout
    import cv2
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 200

    from analyze_logs import read_scalars, scalar_files
    steps, values = read_scalars(scalar_files(str(work)))['loss']
    assert steps == list(range(1, 9))
    assert values[:4] == pytest.approx([1.9, 1.8, 1.7, 1.6])
    assert values[4:] == [1.0] * 4

    proc = run_cli(sys.executable, 'tools/analyze_logs.py', str(work),
                   '--keys', 'mIoU', 'nope', check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"error: no 'nope' in {work} (logged: loss, lr, mIoU)"]


@pytest.fixture
def tools_on_path():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    yield
    sys.path.remove(osp.join(REPO_ROOT, 'tools'))


# ----------------------------------------------------------------------
# backbone pre-training weights


def _fake_official_swin(path):
    """A file with the official release's layout (``model``, ``layers.*``)."""
    torch.save(
        dict(model={
            'patch_embed.proj.weight': torch.randn(8, 3, 4, 4),
            'layers.0.blocks.0.attn.qkv.weight': torch.randn(24, 8),
            'layers.0.blocks.0.mlp.fc1.weight': torch.randn(32, 8),
            'head.weight': torch.randn(10, 8),
        }), path)


def test_download_swin_weights_converts_into_pretrain_dir(tmp_path):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    _fake_official_swin(mirror / 'swin_tiny_patch4_window7_224.pth')
    env = dict(SWIN_BASE_URL=f'file://{mirror}',
               PRETRAIN_DIR=str(tmp_path / 'pretrain'))
    proc = run_cli('bash', 'tools/download_swin_weights.sh',
                   'swin_tiny_patch4_window7_224', env=env)
    target = tmp_path / 'pretrain' / 'swin_tiny_patch4_window7_224.pth'
    assert f'wrote {target}' in proc.stdout
    state = torch.load(target, weights_only=True)['state_dict']
    assert sorted(state) == [
        'patch_embed.projection.weight', 'stages.0.blocks.0.attn.w_msa.qkv.'
        'weight', 'stages.0.blocks.0.ffn.layers.0.0.weight'
    ]
    # present files are kept; a release the mirror lacks is a clear error
    proc = run_cli('bash', 'tools/download_swin_weights.sh', env=env,
                   check=False)
    assert f'{target} exists, skipped' in proc.stdout
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'error: could not download file://{mirror}/'
        'swin_small_patch4_window7_224.pth')
    assert sorted(os.listdir(tmp_path / 'pretrain')) == [target.name]


def test_download_swin_weights_failures(tmp_path):
    env = dict(SWIN_BASE_URL=f'file://{tmp_path}/empty',
               PRETRAIN_DIR=str(tmp_path / 'pretrain'))
    proc = run_cli('bash', 'tools/download_swin_weights.sh', 'swin_huge',
                   env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown Swin weights "
                                          "'swin_huge'")
    proc = run_cli('bash', 'tools/download_swin_weights.sh',
                   'swin_small_patch4_window7_224', env=env, check=False)
    assert proc.returncode == 1
    assert 'error: could not download' in proc.stderr.strip().splitlines()[-1]
    assert list((tmp_path / 'pretrain').iterdir()) == []


def test_download_swin_weights_names_the_official_release():
    with open(osp.join(REPO_ROOT, 'tools', 'download_swin_weights.sh')) as f:
        script = f.read()
    assert 'https://github.com/SwinTransformer/storage/releases/download/' \
        'v1.0.0' in script
    # the four backbones of the Swin configs
    configs = glob.glob(
        osp.join(REPO_ROOT, 'senformer_configs', 'senformer', '*',
                 '*swin*.py'))
    from mmengine.config import Config
    wanted = {
        osp.basename(Config.fromfile(c).model.pretrained)[:-len('.pth')]
        for c in configs
    }
    assert len(wanted) == 4
    for name in wanted:
        assert f'  {name} ' in script, name


def test_missing_swin_weights_say_how_to_get_them(tmp_path, monkeypatch):
    from mmseg.engine.pretrained_weights import PretrainedNotFoundError
    from mmseg.models.backbones import SwinTransformer
    monkeypatch.chdir(tmp_path)
    model = SwinTransformer(
        embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
        window_size=4,
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrain/swin_tiny_patch4_window7_224.pth'))
    with pytest.raises(PretrainedNotFoundError) as info:
        model.init_weights()
    message = str(info.value)
    assert message.startswith('pretrain/swin_tiny_patch4_window7_224.pth '
                              'not found')
    assert 'bash tools/download_swin_weights.sh' in message
    assert 'tools/model_converters/swin2mmseg.py' in message
    assert '\n' not in message


def test_train_without_swin_weights_fails_in_one_line(tmp_path):
    config = ('senformer_configs/senformer/ade20k/'
              'senformer_fpnt_swin_tiny_512x512_160k_ade20k.py')
    proc = run_cli(
        sys.executable, 'tools/train.py', config, '--work-dir',
        str(tmp_path), '--cfg-options',
        f'model.pretrained={tmp_path}/swin_tiny_patch4_window7_224.pth',
        check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert lines[-1] == (
        f'error: {tmp_path}/swin_tiny_patch4_window7_224.pth not found: '
        'run bash tools/download_swin_weights.sh or convert an official '
        'release with tools/model_converters/swin2mmseg.py (see '
        'pretrain/README.md)'), proc.stderr


def test_open_mmlab_weights_come_from_the_cache_or_a_clear_error(
        tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from mmseg.engine import pretrained_weights as pretrained
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    model_cfg = dict(pretrained='open-mmlab://resnet50_v1c',
                     backbone=dict(type='ResNetV1c'))
    url = ('https://download.openmmlab.com/pretrain/third_party/'
           'resnet50_v1c-2cccc1ad.pth')
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / \
        'resnet50_v1c-2cccc1ad.pth'
    assert pretrained.resolve_url('open-mmlab://resnet50_v1c') == url
    assert pretrained.cached_file(url) == str(cached)

    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure in name '
                                    'resolution')

    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    with pytest.raises(pretrained.PretrainedNotFoundError) as info:
        pretrained.ensure_pretrained(model_cfg)
    message = str(info.value)
    assert message.startswith(f'could not download open-mmlab://resnet50_v1c'
                              f' ({url}): [Errno -3]')
    assert f'copy resnet50_v1c-2cccc1ad.pth into {cached.parent}' in message
    assert not list(cached.parent.iterdir())  # no partial file

    # a (valid) cached file needs no network; no file of ours can have the
    # sha256 that the published name carries, so that check is left out
    torch.save({'state_dict': {'conv1.weight': torch.ones(1)}}, str(cached))
    monkeypatch.setattr(pretrained, 'hash_in_name', lambda name: None)
    assert pretrained.ensure_pretrained(model_cfg) == str(cached)
    # other local ranks leave the download to local rank 0
    cached.unlink()
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert pretrained.ensure_pretrained(model_cfg) == \
        'open-mmlab://resnet50_v1c'


def test_pretrained_of_reads_every_way_of_naming_weights():
    from mmseg.engine.pretrained_weights import pretrained_of
    assert pretrained_of(dict(pretrained='a.pth', backbone={})) == 'a.pth'
    assert pretrained_of(dict(backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='b.pth')))) == 'b.pth'
    assert pretrained_of(dict(backbone=dict(pretrained='c.pth'))) == 'c.pth'
    assert pretrained_of(dict(pretrained=None, backbone=dict(
        init_cfg=[dict(type='Kaiming', layer='Conv2d')]))) is None


def test_project_errors_share_one_base_explained_in_one_line():
    from mmseg.apis.inferencer import InferenceInputError
    from mmseg.cli import ConfigError, explain
    from mmseg.datasets.errors import DatasetError
    from mmseg.engine import (CheckpointError, NonFiniteError, SaveError,
                              WorkDirBusyError)
    from mmseg.engine.download_check import BadDownloadError
    from mmseg.engine.pretrained_weights import PretrainedNotFoundError
    from mmseg.utils.errors import SenFormerError
    for cls in (InferenceInputError, DatasetError, CheckpointError,
                NonFiniteError, SaveError, WorkDirBusyError, ConfigError,
                BadDownloadError, PretrainedNotFoundError):
        assert issubclass(cls, SenFormerError), cls
        explanation = explain(cls('data/x.png: broken'))
        assert explanation.message == 'data/x.png: broken', cls
