"""Reliability under bad input, through the command-line tools.

Each case runs a tool's ``main`` under :func:`mmseg.cli.run` (what
``python tools/X.py`` does) on the CPU toy config with a tiny synthetic
dataset, and checks the exit status, that the one ``error:`` line names the
culprit, that no traceback is printed, and that earlier files are intact.
Faults (crashes, kill -9, full disk, dead workers, failing ranks) are in
``test_reliability_faults.py``.
"""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch

from mmseg import cli
from toy_runs import (IMAGE_DEMO, TEST, TRAIN, error_line, run_tool,
                      sha256, train, write_config)

pytestmark = pytest.mark.usefixtures('keep_torch_global_state')

@pytest.fixture
def data(toy_root, tmp_path):
    """A private copy of the toy dataset, free to break."""
    root = str(tmp_path / 'data')
    shutil.copytree(toy_root, root)
    return root


def train_images(root):
    folder = osp.join(root, 'images', 'training')
    return [osp.join(folder, n) for n in sorted(os.listdir(folder))]


def train_labels(root):
    folder = osp.join(root, 'annotations', 'training')
    return [osp.join(folder, n) for n in sorted(os.listdir(folder))]


# ----------------------------------------------------------------------
# dataset layout


@pytest.mark.parametrize('missing', ['data_root', 'images', 'labels'])
def test_missing_dataset_folder(data, tmp_path, capsys, missing):
    if missing == 'data_root':
        path = data
    elif missing == 'images':
        path = osp.join(data, 'images', 'training')
    else:
        path = osp.join(data, 'annotations', 'training')
    shutil.rmtree(path)
    code, err, _ = train(data, tmp_path, capsys)
    assert code == 1
    line = error_line(err)
    assert 'does not exist' in line
    assert (path if missing == 'data_root' else
            osp.relpath(path, data)) in line, line


def test_missing_split_file(data, tmp_path, capsys):
    code, err, _ = train(
        data, tmp_path, capsys, '--cfg-options',
        'train_dataloader.dataset.ann_file=splits/train.txt')
    assert code == 1
    line = error_line(err)
    assert 'split file' in line and 'splits/train.txt' in line


def test_empty_dataset(data, tmp_path, capsys):
    for path in train_images(data) + train_labels(data):
        os.remove(path)
    code, err, _ = train(data, tmp_path, capsys)
    assert code == 1
    line = error_line(err)
    assert 'no images' in line and 'images/training' in line


def test_unpaired_image_names_the_first_one(data, tmp_path, capsys):
    os.remove(train_labels(data)[1])
    code, err, _ = train(data, tmp_path, capsys)
    assert code == 1
    line = error_line(err)
    name = osp.basename(train_images(data)[1])
    assert f'{name}' in line and 'has no label map' in line, line


# ----------------------------------------------------------------------
# broken files, in the main process and in a dataloader worker


def _truncate(path):
    with open(path, 'rb') as f:
        head = f.read(40)
    with open(path, 'wb') as f:
        f.write(head)


@pytest.mark.parametrize('workers', [0, 1])
def test_corrupt_image_is_named(data, tmp_path, capsys, workers):
    bad = train_images(data)[0]
    with open(bad, 'wb') as f:
        f.write(b'not a jpeg at all')
    code, err, _ = train(data, tmp_path, capsys, workers=workers)
    assert code == 1
    line = error_line(err)
    assert bad in line and 'corrupt' in line, line


def test_truncated_label_map_is_named(data, tmp_path, capsys):
    bad = train_labels(data)[1]
    _truncate(bad)
    code, err, _ = train(data, tmp_path, capsys, workers=1)
    assert code == 1
    line = error_line(err)
    assert bad in line and 'label map' in line, line


def test_broken_samples_can_be_skipped_with_a_warning(data, tmp_path,
                                                     capsys):
    bad = train_images(data)[0]
    with open(bad, 'wb') as f:
        f.write(b'garbage')
    code, err, out = train(
        data, tmp_path, capsys, '--cfg-options',
        'train_dataloader.dataset.skip_bad_samples=True')
    assert code == 0, err
    assert 'skipping a broken sample' in out and bad in out
    assert osp.isfile(tmp_path / 'work' / 'iter_1.pth')


def test_label_values_outside_the_classes(data, tmp_path, capsys):
    bad = train_labels(data)[0]
    label = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    label[:4, :4] = 9  # reduce_zero_label makes it 8; the toy has 5 classes
    label[-4:, -4:] = 200
    cv2.imwrite(bad, label)
    code, err, _ = train(data, tmp_path, capsys)
    assert code == 1
    line = error_line(err)
    assert bad in line and '[8, 199]' in line and '5 classes' in line, line


def test_image_and_label_of_different_sizes(data, tmp_path, capsys):
    bad = train_labels(data)[0]
    cv2.imwrite(bad, cv2.imread(bad, cv2.IMREAD_UNCHANGED)[:48, :40])
    code, err, _ = train(data, tmp_path, capsys, workers=1)
    assert code == 1
    line = error_line(err)
    assert bad in line and '48x40' in line and '64x64' in line, line


# ----------------------------------------------------------------------
# configs


def test_config_not_found(tmp_path, capsys):
    missing = str(tmp_path / 'nope.py')
    code, err, _ = run_tool(TRAIN, [missing], capsys)
    assert code == 2
    assert missing in error_line(err)


def test_config_syntax_error_names_file_and_line(data, tmp_path, capsys):
    base = write_config(tmp_path, data)
    with open(base, 'a') as f:
        f.write('optim_wrapper = dict(\n    clip_grad=None,,\n)\n')
    lines = open(base).read().count('\n')
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{base!r}]\n')
    # the error is in a _base_ file: that file is named, not the child
    code, err, _ = run_tool(TRAIN, [str(child)], capsys)
    assert code == 2
    line = error_line(err)
    assert f'{base}, line {lines - 1}' in line and 'syntax' in line, line


def test_unknown_type_lists_close_names(data, tmp_path, capsys):
    code, err, _ = train(data, tmp_path, capsys, '--cfg-options',
                         'model.backbone.type=ResNetV1k')
    assert code == 2
    line = error_line(err)
    assert "'ResNetV1k'" in line and 'model.backbone.type' in line
    assert 'ResNetV1c' in line.split('closest registered names:')[1]


def test_unknown_transform_type(data, tmp_path, capsys):
    code, err, _ = train(data, tmp_path, capsys, '--cfg-options',
                         'train_dataloader.dataset.pipeline.4.type=RandFlip')
    assert code == 2
    line = error_line(err)
    assert "'RandFlip'" in line and 'RandomFlip' in line, line


def test_unknown_argument_names_the_key(data, tmp_path, capsys):
    code, err, _ = train(data, tmp_path, capsys, '--cfg-options',
                         'model.backbone.dpeth=18')
    assert code == 2
    line = error_line(err)
    assert "'dpeth'" in line and 'model.backbone.dpeth' in line
    assert 'did you mean depth' in line


@pytest.mark.parametrize('key, unknown', [
    ('modle.backbone.depth',
     "the config has no key 'modle' (did you mean model?)"),
    ('model.bakbone.depth',
     "model has no key 'bakbone' (did you mean backbone?)"),
    ('model.backbone.depth.x', 'model.backbone.depth is a int'),
    ('train_dataloader.dataset.pipeline.9.type', 'is a list of 7 items'),
])
def test_cfg_options_key_matching_nothing(data, tmp_path, capsys, key,
                                          unknown):
    code, err, _ = train(data, tmp_path, capsys, '--cfg-options', f'{key}=1')
    assert code == 2
    line = error_line(err)
    assert key in line and unknown in line, line
    assert not osp.exists(tmp_path / 'work')  # stopped before any run


def test_cfg_options_new_leaf_of_existing_dict_is_accepted(data):
    cfg = cli.load_config(
        write_config(osp.dirname(data), data),
        {'model.test_cfg.return_learners': True, 'custom_imports': None})
    assert cfg.model.test_cfg.return_learners is True
    # what mmengine adds by default may be set although the config has none
    del cfg.default_hooks['checkpoint']
    cli.check_cfg_options(cfg, {'default_hooks.checkpoint.interval': 5,
                                'randomness.seed': 1})


def test_debug_prints_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / 'nope.py')
    code, err, _ = run_tool(TRAIN, [missing, '--debug'], capsys)
    assert code == 2
    assert 'Traceback' in err and f'error: config file not found: {missing}'\
        in err


# ----------------------------------------------------------------------
# checkpoints


def _test_tool(data, tmp_path, capsys, checkpoint):
    """``tools/test.py``; the checkpoint must come out of it unchanged."""
    cfg = write_config(tmp_path, data)
    before = sha256(checkpoint) if osp.isfile(checkpoint) else None
    result = run_tool(
        TEST, [cfg, str(checkpoint), '--work-dir',
               str(tmp_path / 'work')], capsys)
    assert (sha256(checkpoint) if osp.isfile(checkpoint) else None) == before
    return result


def test_checkpoint_not_found(data, tmp_path, capsys):
    missing = tmp_path / 'missing.pth'
    code, err, _ = _test_tool(data, tmp_path, capsys, missing)
    assert code == 1
    assert str(missing) in error_line(err)


@pytest.mark.parametrize('kind', ['garbage', 'truncated'])
def test_not_a_checkpoint(data, tmp_path, capsys, toy_state, kind):
    path = tmp_path / 'bad.pth'
    if kind == 'garbage':
        path.write_bytes(os.urandom(3000))
    else:
        torch.save({'state_dict': toy_state}, str(path))
        path.write_bytes(path.read_bytes()[:100000])
    code, err, _ = _test_tool(data, tmp_path, capsys, path)
    assert code == 1
    line = error_line(err)
    assert f'{path} is not a checkpoint' in line, line


def test_checkpoint_of_another_architecture(data, tmp_path, capsys,
                                            toy_state):
    path = tmp_path / 'other.pth'
    other = {k.replace('backbone.', 'encoder.'): v
             for k, v in toy_state.items()}
    torch.save({'state_dict': other}, str(path))
    code, err, _ = _test_tool(data, tmp_path, capsys, path)
    assert code == 1
    line = error_line(err)
    assert str(path) in line and 'does not match the model' in line
    assert 'missing' in line and 'unexpected keys' in line
    # summarised by prefix, not listed key by key
    assert 'backbone.layer1.*: ' in err and 'encoder.layer1.*: ' in err
    assert len(err) < 1500, err


def test_checkpoint_with_another_number_of_classes(data, tmp_path, capsys,
                                                   toy_state):
    path = tmp_path / 'k8.pth'
    other = dict(toy_state)
    for key, value in toy_state.items():
        if key.endswith(('conv_seg.weight', 'conv_seg.bias', 'queries')):
            shape = list(value.shape)
            dim = shape.index(5)
            shape[dim] = 8
            other[key] = torch.zeros(shape)
    torch.save({'state_dict': other}, str(path))
    code, err, _ = _test_tool(data, tmp_path, capsys, path)
    assert code == 1
    assert 'does not match the model' in error_line(err)
    assert 'the checkpoint has 8 classes, the model 5' in err
    assert 'To fine-tune from it' in err and 'load_from' in err


class _RunsCode:
    """Unpickling this writes a marker file: a checkpoint that runs code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('tool', ['test', 'load_from', 'resume', 'demo'])
def test_code_running_checkpoint_is_refused_everywhere(
        data, tmp_path, capsys, toy_state, tool):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': toy_state, 'meta': _RunsCode(str(marker))},
               str(path))
    if tool == 'test':
        code, err, _ = _test_tool(data, tmp_path, capsys, path)
    elif tool == 'load_from':
        code, err, _ = train(data, tmp_path, capsys, '--cfg-options',
                             f'load_from={path}')
    elif tool == 'resume':
        code, err, _ = train(data, tmp_path, capsys, '--resume', str(path))
    else:
        image = train_images(data)[0]
        code, err, _ = run_tool(IMAGE_DEMO, [
            image, write_config(tmp_path, data), str(path), '--out-file',
            str(tmp_path / 'out.png')
        ], capsys)
    assert code == 1
    line = error_line(err)
    assert f'refusing to load {path}' in line and 'io.open' in line
    assert not marker.exists()


def test_image_demo_missing_image(data, tmp_path, capsys):
    missing = str(tmp_path / 'nope.jpg')
    code, err, _ = run_tool(
        IMAGE_DEMO, [missing, write_config(tmp_path, data), 'x.pth'],
        capsys)
    assert code == 1
    assert missing in error_line(err)


# ----------------------------------------------------------------------
# the handler itself


def test_unexpected_exception_points_to_the_traceback(capsys):

    def main(argv):
        raise ZeroDivisionError('boom')

    assert cli.run(main, []) == 1
    err = capsys.readouterr().err
    assert error_line(err) == 'error: ZeroDivisionError: boom'
    assert '--debug' in err


def test_worker_exception_is_unwrapped():
    # what torch re-raises in the main process for an error in a worker
    text = ('Caught DatasetError in DataLoader worker process 0.\n'
            'Original Traceback (most recent call last):\n'
            '  File "x.py", line 1, in f\n    raise DatasetError(m)\n'
            "mmseg.datasets.errors.DatasetError: image file 'a.jpg' is "
            'empty or corrupt')
    from mmseg.datasets import DatasetError
    explanation = cli.explain(DatasetError(text))
    assert explanation.message == "image file 'a.jpg' is empty or corrupt"
    assert explanation.exit_code == 1 and explanation.expected


def test_success_returns_zero_and_int_results_pass_through():
    assert cli.run(lambda argv: {'mIoU': 1.0}, []) == 0
    assert cli.run(lambda argv: 3, []) == 3
    assert np.isfinite(cli.EXIT_USAGE)


def test_dead_worker_error_wrapped_by_interrupted_code_is_named():
    """PyTorch raises a dead worker's error from its SIGCHLD handler, inside
    whatever runs at that moment; code that wraps errors (here as mmengine's
    config formatting does) must not hide it."""
    try:
        try:
            raise RuntimeError('DataLoader worker (pid 123) is killed by '
                               'signal: Killed. ')
        except Exception:
            raise SyntaxError('Failed to format the config file')
    except SyntaxError as wrapped:
        explanation = cli.explain(wrapped)
    assert explanation.message.startswith(
        'a dataloader worker died (DataLoader worker (pid 123) is killed')
    assert explanation.exit_code == cli.EXIT_FAILURE
