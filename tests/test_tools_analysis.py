"""Analysis and training conveniences on tiny generated data:
tools/analysis_tools/confusion_matrix.py (and its per-learner form from
tools/test.py --per-learner --out), tools/test.py --tta and --format-only
(Cityscapes label ids for the test server), tools/train.py --vis-backend and
tools/misc/collect_env.py."""
import contextlib
import csv
import glob
import importlib.util
import io
import json
import os
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, run_cli

TOY = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')
TOY_CLASSES = ['background', 'square', 'disc', 'triangle', 'bar']
NO_WORKERS = ['test_dataloader.num_workers=0',
              'test_dataloader.persistent_workers=False']



def run_tool(path, *args):
    """A tool's main() in this process: (exit status, stdout, stderr)."""
    from mmseg.cli import run
    module = runpy.run_path(osp.join(REPO_ROOT, path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(module['main'], [str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_error_line(err):
    lines = [line for line in err.strip().splitlines()
             if not line.startswith('[')]  # progress bars
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert 'Traceback' not in err
    return lines[0]


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'misc'))
    try:
        from generate_toy_dataset import generate
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp('toy') / 'data'
    generate(str(root), num_train=2, num_val=3, size=64, seed=0)
    return root


def _random_checkpoint(path, **cfg_options):
    """A toy model whose classes score differently (random SenFormer
    weights score them alike), saved as a checkpoint."""
    from mmseg.apis import init_model
    from mmseg.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = init_model(TOY, cfg_options=cfg_options)
    with torch.no_grad():
        for learner in model.decode_head.learners:
            learner.queries.normal_()
    torch.save(dict(state_dict=model.state_dict()), path)
    return model


def _labels(data_root):
    """Raw validation label maps by image stem (0 = ignored "other")."""
    return {
        osp.splitext(osp.basename(p))[0]: cv2.imread(p, cv2.IMREAD_UNCHANGED)
        for p in sorted(glob.glob(str(data_root / 'annotations' /
                                      'validation' / '*.png')))
    }


def _read_csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == TOY_CLASSES
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]])


# ----------------------------------------------------------------------
# confusion matrix


def test_confusion_matrix_counts_pixels_per_class_pair(toy_data, tmp_path):
    labels = _labels(toy_data)
    pred_dir = tmp_path / 'pred'
    rng = np.random.default_rng(0)
    expected = np.zeros((5, 5), np.int64)
    for folder, corrupt in (('', 0.3), ('learner0', 0.), ('learner1', 1.)):
        os.makedirs(pred_dir / folder, exist_ok=True)
        counts = np.zeros((5, 5), np.int64)
        for stem, label in labels.items():
            # predictions in the dataset's convention: class k saved as k+1
            pred = label.copy()
            pred[pred == 0] = 1  # "other" pixels: any class, ignored
            noise = rng.random(pred.shape) < corrupt
            pred[noise] = rng.integers(1, 6, int(noise.sum()))
            cv2.imwrite(str(pred_dir / folder / f'{stem}.png'), pred)
            valid = label > 0
            np.add.at(counts, (label[valid] - 1, pred[valid] - 1), 1)
        if folder == '':
            expected = counts
        elif folder == 'learner0':
            assert np.count_nonzero(counts - np.diag(np.diag(counts))) == 0
    save_dir = tmp_path / 'cm'
    code, out, err = run_tool(
        'tools/analysis_tools/confusion_matrix.py', TOY, pred_dir, save_dir,
        '--per-learner', '--title', 'Toy', '--color-theme', 'Blues',
        '--cfg-options', f'test_dataloader.dataset.data_root={toy_data}')
    assert code == 0, err
    np.testing.assert_array_equal(
        _read_csv(save_dir / 'confusion_matrix.csv'), expected)
    learner0 = _read_csv(save_dir / 'confusion_matrix_learner0.csv')
    assert learner0.sum() == expected.sum()
    assert np.trace(learner0) == learner0.sum()  # the perfect learner
    for name in ('confusion_matrix.png', 'confusion_matrix_learner0.png',
                 'confusion_matrix_learner1.png'):
        image = cv2.imread(str(save_dir / name))
        assert image is not None and image.shape[0] > 300, name
    diagonal = 100 * np.trace(expected) / expected.sum()
    assert f'ensemble: {expected.sum()} pixels, {diagonal:.2f} % on the ' \
        'diagonal' in out
    assert 'learner0: ' in out and '100.00 % on the diagonal' in out


def test_confusion_matrix_bad_input_gives_one_line(toy_data, tmp_path):
    labels = _labels(toy_data)
    pred_dir = tmp_path / 'pred'
    os.makedirs(pred_dir)
    stems = sorted(labels)
    for stem in stems[:-1]:
        cv2.imwrite(str(pred_dir / f'{stem}.png'), np.maximum(labels[stem],
                                                              1))
    data = f'test_dataloader.dataset.data_root={toy_data}'
    tool = 'tools/analysis_tools/confusion_matrix.py'
    # an image without prediction
    code, _, err = run_tool(tool, TOY, pred_dir, tmp_path / 'cm',
                            '--cfg-options', data)
    assert code == 1 and f'{stems[-1]}.png' in one_error_line(err)
    # a value that is no class (saved as 1..5 for this dataset)
    bad = np.maximum(labels[stems[-1]], 1)
    bad[0, 0] = 9
    cv2.imwrite(str(pred_dir / f'{stems[-1]}.png'), bad)
    code, _, err = run_tool(tool, TOY, pred_dir, tmp_path / 'cm',
                            '--cfg-options', data)
    line = one_error_line(err)
    assert code == 1 and f'{stems[-1]}.png' in line and '[9]' in line
    cv2.imwrite(str(pred_dir / f'{stems[-1]}.png'),
                np.maximum(labels[stems[-1]], 1))
    for args, culprit in [
        ((TOY, tmp_path / 'no_such_dir', tmp_path / 'cm'), 'no_such_dir'),
        ((TOY, pred_dir, tmp_path / 'cm', '--per-learner'), 'learner0/'),
        ((TOY, pred_dir, tmp_path / 'cm', '--color-theme', 'no_such_map'),
         'no_such_map'),
        (('no_such_config.py', pred_dir, tmp_path / 'cm'),
         'no_such_config.py'),
    ]:
        code, _, err = run_tool(tool, *args, '--cfg-options', data)
        assert code != 0 and culprit in one_error_line(err), (args, err)


@pytest.mark.slow
def test_confusion_matrix_of_test_out_matches_its_metrics(toy_data,
                                                          tmp_path):
    """tools/test.py --per-learner --out writes the ensemble's and each
    learner's label maps; their matrices give test.py's mIoU (each
    learner's too) and aAcc."""
    checkpoint = tmp_path / 'toy.pth'
    _random_checkpoint(checkpoint)
    data = f'test_dataloader.dataset.data_root={toy_data}'
    run_cli(sys.executable, 'tools/test.py', TOY, checkpoint, '--work-dir',
            tmp_path / 'eval', '--out', tmp_path / 'pred', '--per-learner',
            '--cfg-options', data, *NO_WORKERS)
    stems = sorted(_labels(toy_data))
    for folder in ['', 'learner0', 'learner1', 'learner2', 'learner3']:
        written = sorted(glob.glob(str(tmp_path / 'pred' / folder /
                                       '*.png')))
        assert [osp.basename(p) for p in written] == [
            f'{s}.png' for s in stems], folder
    metrics = json.loads(open(glob.glob(
        str(tmp_path / 'eval' / 'eval_*.json'))[0]).read())['metrics']
    proc = run_cli(sys.executable, 'tools/analysis_tools/confusion_matrix.py',
                   TOY, tmp_path / 'pred', tmp_path / 'cm', '--per-learner',
                   '--cfg-options', data)
    for name, key in [('ensemble', ''), ('learner0', '_learner0'),
                      ('learner3', '_learner3')]:
        matrix = _read_csv(tmp_path / 'cm' / f'confusion_matrix{key}.csv')
        diag = np.diag(matrix)
        with np.errstate(invalid='ignore', divide='ignore'):
            iou = diag / (matrix.sum(0) + matrix.sum(1) - diag)
        miou = 100 * np.nanmean(iou)
        metric = 'mIoU' if name == 'ensemble' else f'{name}_mIoU'
        assert miou == pytest.approx(metrics[metric], abs=0.01), name
        assert f'{name}: {matrix.sum()} pixels' in proc.stdout
    ensemble = _read_csv(tmp_path / 'cm' / 'confusion_matrix.csv')
    assert 100 * np.trace(ensemble) / ensemble.sum() == pytest.approx(
        metrics['aAcc'], abs=0.01)


# ----------------------------------------------------------------------
# tools/test.py: --tta, --format-only


def _test_tool():
    return runpy.run_path(osp.join(REPO_ROOT, 'tools', 'test.py'))


def test_tta_is_the_aug_test_of_mmsegmentation_1x():
    tool = _test_tool()
    assert tool['parse_args'](['c.py', 'k.pth', '--tta']).aug_test
    assert tool['parse_args'](['c.py', 'k.pth', '--aug-test']).aug_test
    assert not tool['parse_args'](['c.py', 'k.pth']).aug_test
    args = tool['parse_args'](['c.py', 'k.pth', '--tta'])
    args.config = TOY
    cfg = tool['build_config'](args)
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_cityscapes_label_ids_agree_with_the_converter():
    from mmseg.datasets.cityscapes import (TRAIN_ID_TO_LABEL_ID,
                                           CityscapesDataset)
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'convert_datasets'))
    try:
        from cityscapes import LABELS
    finally:
        sys.path.pop(0)
    by_train_id = {train_id: (name, label_id)
                   for name, label_id, train_id in LABELS
                   if 0 <= train_id < 255}
    classes = CityscapesDataset.METAINFO['classes']
    assert len(TRAIN_ID_TO_LABEL_ID) == len(classes) == len(by_train_id)
    for train_id, label_id in enumerate(TRAIN_ID_TO_LABEL_ID):
        assert by_train_id[train_id] == (classes[train_id], label_id)


CITYSCAPES_TEST = [
    'test_dataloader.dataset.type=CityscapesDataset',
    'test_dataloader.dataset.metainfo=None',
    'test_dataloader.dataset.reduce_zero_label=False',
    'test_dataloader.dataset.data_prefix.img_path=leftImg8bit/test',
    'test_dataloader.dataset.data_prefix.seg_map_path=gtFine/test',
]


@pytest.mark.slow
def test_format_only_writes_cityscapes_label_ids_without_labels(tmp_path):
    root = tmp_path / 'cityscapes'
    rng = np.random.default_rng(0)
    names = ['berlin_000000_000019', 'bonn_000001_000019']
    for name in names:
        city = name.split('_')[0]
        os.makedirs(root / 'leftImg8bit' / 'test' / city, exist_ok=True)
        cv2.imwrite(str(root / 'leftImg8bit' / 'test' / city /
                        f'{name}_leftImg8bit.png'),
                    rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    # no gtFine at all: the test split has no labels
    options = CITYSCAPES_TEST + [
        f'test_dataloader.dataset.data_root={root}',
        'model.decode_head.num_classes=19',
        'model.auxiliary_head.num_classes=19'
    ] + NO_WORKERS
    checkpoint = tmp_path / 'city.pth'
    model = _random_checkpoint(checkpoint, **{
        'model.decode_head.num_classes': 19,
        'model.auxiliary_head.num_classes': 19})
    out = tmp_path / 'submission'
    proc = run_cli(sys.executable, 'tools/test.py', TOY, checkpoint,
                   '--format-only', '--out', out, '--work-dir',
                   tmp_path / 'eval', '--cfg-options', *options)
    assert f'predictions saved in {out}' in proc.stdout + proc.stderr
    assert sorted(os.listdir(out)) == [f'{n}_leftImg8bit.png' for n in names]
    from mmseg.apis import inference_model
    from mmseg.datasets.cityscapes import TRAIN_ID_TO_LABEL_ID
    for name in names:
        city = name.split('_')[0]
        saved = cv2.imread(str(out / f'{name}_leftImg8bit.png'),
                           cv2.IMREAD_UNCHANGED)
        train_ids = inference_model(
            model, str(root / 'leftImg8bit' / 'test' / city /
                       f'{name}_leftImg8bit.png')).pred_sem_seg.data[0]
        assert saved.shape == (64, 96)
        expected = np.array(TRAIN_ID_TO_LABEL_ID)[train_ids.numpy()]
        np.testing.assert_array_equal(saved, expected)
        assert len(np.unique(saved)) > 1  # not a constant map


def test_format_only_needs_out(tmp_path):
    code, _, err = run_tool('tools/test.py', TOY, tmp_path / 'k.pth',
                            '--format-only')
    # the checkpoint is looked at first
    assert code == 1 and 'k.pth' in one_error_line(err)
    (tmp_path / 'k.pth').write_bytes(b'')
    code, _, err = run_tool('tools/test.py', TOY, tmp_path / 'k.pth',
                            '--format-only')
    assert code == 2 and '--format-only' in one_error_line(err) and \
        '--out' in one_error_line(err)


# ----------------------------------------------------------------------
# tools/train.py --vis-backend, collect_env


def _train_config(*args):
    tool = runpy.run_path(osp.join(REPO_ROOT, 'tools', 'train.py'))
    return tool['build_config'](tool['parse_args']([TOY, *args]))


def _backend_types(cfg):
    return [b['type'] for b in cfg.visualizer.vis_backends]


def test_vis_backend_local_logs_only_to_the_work_dir():
    assert _backend_types(_train_config('--vis-backend', 'local')) == \
        ['LocalVisBackend']


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None,
                    reason='tensorboard is not installed')
def test_vis_backend_tensorboard():
    assert _backend_types(_train_config('--vis-backend', 'tensorboard')) == \
        ['LocalVisBackend', 'TensorboardVisBackend']


def test_vis_backend_wandb(monkeypatch):
    """(The config only: wandb itself is pretended installed.)"""
    import importlib
    import types
    real_import_module = importlib.import_module
    monkeypatch.setattr(
        importlib, 'import_module', lambda name, *a, **k: types.ModuleType(
            name) if name == 'wandb' else real_import_module(name, *a, **k))
    monkeypatch.delenv('WANDB_PROJECT', raising=False)
    cfg = _train_config('--vis-backend', 'wandb', '--work-dir', 'w/run1')
    assert _backend_types(cfg) == ['LocalVisBackend', 'WandbVisBackend']
    assert cfg.visualizer.vis_backends[1]['init_kwargs'] == dict(
        project='senformer', name='run1')
    monkeypatch.setenv('WANDB_PROJECT', 'mine')
    cfg = _train_config('--vis-backend', 'wandb', '--work-dir', 'w/run1')
    assert cfg.visualizer.vis_backends[1]['init_kwargs'] == dict(name='run1')


@pytest.mark.parametrize('name, package', [('wandb', 'wandb'),
                                           ('tensorboard', 'tensorboard')])
def test_vis_backend_without_its_package_gives_one_line(
        name, package, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_package(module, *args, **kwargs):
        if module == package or module.startswith(package + '.'):
            raise ModuleNotFoundError(f"No module named '{package}'")
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_package)
    monkeypatch.delitem(sys.modules, package, raising=False)
    import importlib
    real_import_module = importlib.import_module

    def no_module(module, *args, **kwargs):
        if module == package:
            raise ModuleNotFoundError(f"No module named '{package}'")
        return real_import_module(module, *args, **kwargs)

    monkeypatch.setattr(importlib, 'import_module', no_module)
    code, _, err = run_tool('tools/train.py', TOY, '--vis-backend', name)
    assert code == 2
    assert one_error_line(err) == (
        f'error: --vis-backend {name} needs the package {package!r}, which '
        f'is not installed: pip install {package}')


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None,
                    reason='tensorboard is not installed')
def test_training_with_tensorboard_writes_events(toy_data, tmp_path):
    options = [
        f'{loader}.{key}' for loader in ('train_dataloader',
                                         'val_dataloader')
        for key in (f'dataset.data_root={toy_data}', 'num_workers=0',
                    'persistent_workers=False')
    ] + ['train_cfg.max_iters=2', 'train_cfg.val_interval=10',
         'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1',
         'default_hooks.checkpoint.interval=2']
    run_cli(sys.executable, 'tools/train.py', TOY, '--work-dir',
            tmp_path / 'work', '--vis-backend', 'tensorboard',
            '--cfg-options', *options)
    events = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' /
                           'events.out.tfevents.*'))
    assert events and os.path.getsize(events[0]) > 0
    assert glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' /
                         'scalars.json'))


def test_collect_env_names_torch_mmengine_and_this_code():
    import mmseg
    code, out, err = run_tool('tools/misc/collect_env.py')
    assert code == 0, err
    fields = dict(line.split(': ', 1) for line in out.splitlines()
                  if ': ' in line and not line.startswith(' '))
    assert fields['PyTorch'] == torch.__version__
    assert fields['MMSegmentation'].startswith(mmseg.__version__)
    assert 'MMEngine' in fields and 'MMCV' in fields


# ----------------------------------------------------------------------
# slide inference defaults


def test_slide_inference_defaults_to_the_training_crop(capsys):
    tool = _test_tool()
    args = tool['parse_args'](['c.py', 'k.pth', '--cfg-options',
                               'model.test_cfg.mode=slide'])
    args.config = TOY
    cfg = tool['build_config'](args)
    assert cfg.model.test_cfg.crop_size == (128, 128)
    assert cfg.model.test_cfg.stride == (85, 85)
    assert 'slide inference: crop_size=(128, 128), stride=(85, 85)' in \
        capsys.readouterr().out
    # given values are kept
    args = tool['parse_args'](['c.py', 'k.pth', '--cfg-options',
                               'model.test_cfg.mode=slide',
                               'model.test_cfg.crop_size=(96,64)',
                               'model.test_cfg.stride=(50,40)'])
    args.config = TOY
    cfg = tool['build_config'](args)
    assert cfg.model.test_cfg.crop_size == (96, 64)
    assert cfg.model.test_cfg.stride == (50, 40)
    # the stride follows a given crop size
    args = tool['parse_args'](['c.py', 'k.pth', '--cfg-options',
                               'model.test_cfg.mode=slide',
                               'model.test_cfg.crop_size=(96,63)'])
    args.config = TOY
    assert tool['build_config'](args).model.test_cfg.stride == (64, 42)
