"""Training, evaluation and inference through the real command lines, on
tiny generated datasets: tools/train.py, tools/test.py (plain, --aug-test,
--out, --show-dir, --per-learner), demo/image_demo.py,
tools/analyze_logs.py, tools/publish_model.py, tools/dist_train.sh (2 CPU
processes), --resume after an interruption, and the toy config retargeted
to another folder through --cfg-options. The full quick start
(tools/misc/quickstart.sh) runs only with MMSEG_SLOW_TESTS=1."""
import glob
import json
import os
import os.path as osp
import re
import shlex
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, free_port, run_cli

TOY = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')
TOY_CLASSES = ('background', 'square', 'disc', 'triangle', 'bar')
NUM_VAL = 3

# A tiny version of the toy config: 64x64 images, batch 2, no worker
# processes, 4 iterations with a checkpoint every 2.
SMALL_CONFIG = '''
_base_ = [{toy!r}]
data_root = {root!r}
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})
default_hooks = dict(
    checkpoint=dict(interval={interval}), logger=dict(interval=1))
'''

# Stops the process right after the checkpoint of iteration `iters` is
# written, as a crash or a kill would (no clean-up, no final checkpoint).
STOP_HOOK = '''
import os
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class StopAfterIter(Hook):
    priority = 'LOWEST'  # after the CheckpointHook has saved

    def __init__(self, iters):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iters:
            os._exit(3)
'''



def generate(root, **kwargs):
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'misc'))
    try:
        from generate_toy_dataset import generate as generate_toy
    finally:
        sys.path.pop(0)
    options = dict(num_train=8, num_val=NUM_VAL, size=64, seed=0)
    options.update(kwargs)
    generate_toy(str(root), **options)


def small_config(path, data_root, max_iters=4, interval=2, extra=''):
    with open(path, 'w') as f:
        f.write(SMALL_CONFIG.format(toy=TOY, root=str(data_root),
                                    max_iters=max_iters,
                                    interval=interval) + extra)
    return str(path)


def train(config, work_dir, *args, **kwargs):
    return run_cli(sys.executable, 'tools/train.py', config, '--work-dir',
                   work_dir, *args, **kwargs)


def eval_json(work_dir):
    files = sorted(glob.glob(osp.join(str(work_dir), 'eval_*.json')))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)


def read_checkpoint(path):
    from mmseg.engine import read_checkpoint as read
    return read(str(path))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 4-iteration training of the tiny toy config."""
    root = tmp_path_factory.mktemp('toy')
    generate(root / 'data')
    config = small_config(root / 'small.py', root / 'data')
    train(config, root / 'work')
    return dict(root=root, config=config, work=root / 'work',
                checkpoint=root / 'work' / 'iter_4.pth',
                data=root / 'data')


def test_train_writes_checkpoints_and_scalars(trained):
    work = trained['work']
    assert sorted(osp.basename(p) for p in glob.glob(str(work / '*.pth'))) \
        == ['best_mIoU_iter_4.pth', 'iter_2.pth', 'iter_4.pth']
    with open(work / 'last_checkpoint') as f:
        assert f.read().strip().endswith('iter_4.pth')
    (scalars, ) = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    assert [r['step'] for r in records if 'loss' in r] == [1, 2, 3, 4]
    assert [r['step'] for r in records if 'mIoU' in r] == [4]
    checkpoint = read_checkpoint(trained['checkpoint'])
    assert checkpoint['meta']['iter'] == 4
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == \
        TOY_CLASSES


def test_test_reports_and_writes_labels_overlays_and_json(trained, tmp_path):
    out, show = tmp_path / 'pred', tmp_path / 'show'
    proc = run_cli(sys.executable, 'tools/test.py', trained['config'],
                   trained['checkpoint'], '--work-dir', tmp_path / 'eval',
                   '--out', out, '--show-dir', show, '--per-learner')
    log = proc.stdout + proc.stderr
    # progress, the per-class table and the summary
    assert f'Iter(test) [{NUM_VAL}/{NUM_VAL}]' in log
    for name in TOY_CLASSES:
        assert re.search(rf'\|\s*{name}\s*\|', log), name
    assert re.search(r'aAcc: [\d.]+\s+mIoU: [\d.]+\s+mAcc: [\d.]+', log)

    report = eval_json(tmp_path / 'eval')
    assert report['aug_test'] is False
    assert report['checkpoint'] == str(trained['checkpoint'])
    metrics = report['metrics']
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert 0 <= metrics[key] <= 100, (key, metrics)
    learner_keys = [k for k in metrics if 'learner' in k.lower()]
    assert len(learner_keys) >= 4, metrics  # one mIoU per learner

    images = sorted(glob.glob(str(trained['data'] / 'images' / 'validation'
                                  / '*.jpg')))
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    labels = sorted(glob.glob(str(out / '*.png')))
    assert [osp.splitext(osp.basename(p))[0] for p in labels] == stems
    for path in labels:
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 64) and label.dtype == np.uint8
        assert label.max() <= len(TOY_CLASSES)  # class ids, no colours
    overlays = sorted(glob.glob(str(show / '*.png')))
    assert [osp.splitext(osp.basename(p))[0] for p in overlays] == stems
    for path in overlays:
        assert cv2.imread(path).shape[0] == 64


def test_aug_test_of_a_published_checkpoint(trained, tmp_path):
    proc = run_cli(sys.executable, 'tools/publish_model.py',
                   trained['checkpoint'], tmp_path / 'toy.pth')
    (published, ) = glob.glob(str(tmp_path / 'toy-*.pth'))
    assert published in proc.stdout
    assert sorted(read_checkpoint(published)) == ['meta', 'state_dict']
    run_cli(sys.executable, 'tools/test.py', trained['config'], published,
            '--aug-test', '--work-dir', tmp_path / 'eval')
    report = eval_json(tmp_path / 'eval')
    assert report['aug_test'] is True
    assert 0 <= report['metrics']['mIoU'] <= 100


def test_image_demo_writes_overlays_at_image_size(trained, tmp_path):
    image = cv2.resize(
        cv2.imread(str(trained['data'] / 'images' / 'validation' /
                       'toy_validation_00000.jpg')), (90, 70))
    cv2.imwrite(str(tmp_path / 'in.jpg'), image)
    out = tmp_path / 'seg.png'
    proc = run_cli(sys.executable, 'demo/image_demo.py', tmp_path / 'in.jpg',
                   trained['config'], trained['checkpoint'], '--out-file',
                   out, '--learners', '--opacity', '0.7')
    assert f'wrote {out}' in proc.stdout
    overlay = cv2.imread(str(out))
    assert overlay.shape == (70, 90, 3)
    assert not np.array_equal(overlay, image)  # the labels are drawn
    learners = sorted(glob.glob(str(tmp_path / 'seg_learner*.png')))
    assert len(learners) == 4
    for path in learners:
        assert cv2.imread(path).shape == (70, 90, 3)
    # multi-scale + flip
    run_cli(sys.executable, 'demo/image_demo.py', tmp_path / 'in.jpg',
            trained['config'], trained['checkpoint'], '--out-file',
            tmp_path / 'seg_ms.png', '--aug-test')
    assert cv2.imread(str(tmp_path / 'seg_ms.png')).shape == (70, 90, 3)


def test_analyze_logs_plots_the_training(trained, tmp_path):
    out = tmp_path / 'curves.png'
    proc = run_cli(sys.executable, 'tools/analyze_logs.py', trained['work'],
                   '--keys', 'loss', 'decode.loss_seg', 'mIoU', '--out', out)
    assert 'at iter 4' in proc.stdout
    assert cv2.imread(str(out)).shape[0] >= 3 * 200  # three panels



def test_dist_train_with_two_cpu_processes(trained, tmp_path):
    work = tmp_path / 'work'
    run_cli('bash', 'tools/dist_train.sh', trained['config'], 2,
            '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2',
            env=dict(PORT=str(free_port()), CUDA_VISIBLE_DEVICES=''))
    distributed = read_checkpoint(work / 'iter_2.pth')
    single = read_checkpoint(trained['work'] / 'iter_2.pth')
    # the same checkpoint format as a single-process run
    assert sorted(distributed) == sorted(single)
    assert distributed['meta']['iter'] == 2
    assert sorted(distributed['state_dict']) == sorted(single['state_dict'])
    for key, value in single['state_dict'].items():
        assert distributed['state_dict'][key].shape == value.shape, key
    run_cli(sys.executable, 'tools/test.py', trained['config'],
            work / 'iter_2.pth', '--work-dir', tmp_path / 'eval')
    assert 0 <= eval_json(tmp_path / 'eval')['metrics']['mIoU'] <= 100


def _lr_history(checkpoint):
    buffer = checkpoint['message_hub']['log_scalars']['train/lr']
    values, _ = buffer.data
    return np.asarray(values).tolist()


def test_resume_continues_iterations_and_lr_schedule(trained, tmp_path):
    config = small_config(tmp_path / 'six_iters.py', trained['data'],
                          max_iters=6, interval=3)
    train(config, tmp_path / 'straight')

    # the same training, killed right after its iteration-3 checkpoint
    (tmp_path / 'plugins').mkdir()
    (tmp_path / 'plugins' / 'stop_hook.py').write_text(STOP_HOOK)
    stopping = small_config(
        tmp_path / 'stopping.py', trained['data'], max_iters=6, interval=3,
        extra="custom_imports = dict(imports=['stop_hook'])\n"
        'custom_hooks = [dict(type="StopAfterIter", iters=3)]\n')
    env = dict(PYTHONPATH=os.pathsep.join(
        [str(tmp_path / 'plugins'), os.environ.get('PYTHONPATH', '')]))
    proc = train(stopping, tmp_path / 'resumed', env=env, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert not (tmp_path / 'resumed' / 'iter_6.pth').exists()
    # --resume without a file: the last checkpoint of the work dir
    train(config, tmp_path / 'resumed', '--resume')

    straight = read_checkpoint(tmp_path / 'straight' / 'iter_6.pth')
    resumed = read_checkpoint(tmp_path / 'resumed' / 'iter_6.pth')
    assert straight['meta']['iter'] == resumed['meta']['iter'] == 6
    # every logged learning rate, iterations 1-3 from before the
    # interruption, 4-6 after it, equals the uninterrupted run's
    assert len(_lr_history(straight)) == 6
    assert _lr_history(resumed) == pytest.approx(_lr_history(straight),
                                                 rel=1e-9)
    for ours, theirs in zip(resumed['param_schedulers'],
                            straight['param_schedulers']):
        assert ours['_global_step'] == theirs['_global_step'] == 6
        assert ours['last_step'] == theirs['last_step']
        assert ours['_last_value'] == pytest.approx(theirs['_last_value'])
    # the resumed run logged iterations 4-6 only
    runs = sorted(glob.glob(str(tmp_path / 'resumed' / '*' / 'vis_data' /
                                'scalars.json')))
    assert len(runs) == 2
    with open(runs[-1]) as f:
        steps = [json.loads(line)['step'] for line in f]
    assert [s for s in steps if s <= 3] == []
    assert 4 in steps and 6 in steps


def test_auto_scale_lr_scales_to_the_total_batch(trained, tmp_path):
    """The toy config's rates are set for 4 images per iteration; with 2
    they are halved."""
    train(trained['config'], tmp_path / 'scaled', '--auto-scale-lr')
    plain = _lr_history(read_checkpoint(trained['checkpoint']))
    scaled = _lr_history(read_checkpoint(tmp_path / 'scaled' / 'iter_4.pth'))
    assert scaled == pytest.approx([lr / 2 for lr in plain], rel=1e-9)


def test_accumulate_keeps_the_recipe_with_half_the_images(trained, tmp_path):
    """--accumulate 2: twice the iterations of half the batch, one update
    every two iterations at the recipe's rate of that update."""
    config = small_config(tmp_path / 'two_updates.py', trained['data'],
                          max_iters=2, interval=1)
    train(config, tmp_path / 'accumulated', '--accumulate', '2')
    work = tmp_path / 'accumulated'
    assert sorted(osp.basename(p) for p in glob.glob(str(work / '*.pth'))) \
        == ['best_mIoU_iter_4.pth', 'iter_2.pth', 'iter_4.pth']
    checkpoint = read_checkpoint(work / 'iter_4.pth')
    plain = _lr_history(read_checkpoint(trained['checkpoint']))
    assert _lr_history(checkpoint) == pytest.approx(
        [plain[0], plain[0], plain[1], plain[1]], rel=1e-9)
    # AdamW's step count: one update per two iterations
    steps = {int(state['step'])
             for state in checkpoint['optimizer']['state'].values()}
    assert steps == {2}


def _documented_options(root, classes):
    """The toy config header's --cfg-options, for folder ``root``."""
    lines = []
    with open(TOY) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line[1:].strip().rstrip('\\'))
    words = shlex.split(' '.join(lines))
    options = []
    for word in words[words.index('--cfg-options') + 1:]:
        if '=' not in word:
            break
        options.append(
            word.replace('data/mine', str(root)).replace(
                '[a,b,c]', '[' + ','.join(classes) + ']'))
    return options


def test_toy_config_trains_another_folder_with_three_classes(tmp_path):
    """The header's recipe: --cfg-options for data_root, classes and
    num_classes, on a 3-class ADE20K-layout folder."""
    rng = np.random.default_rng(0)
    classes = ('sky', 'road', 'car')
    for split, count in (('training', 4), ('validation', 2)):
        os.makedirs(tmp_path / 'data' / 'images' / split)
        os.makedirs(tmp_path / 'data' / 'annotations' / split)
        for i in range(count):
            label = np.ones((48, 48), np.uint8)  # sky
            label[24:] = 2  # road
            x = int(rng.integers(0, 30))
            label[20:34, x:x + 16] = 3  # car
            label[0, :] = 0  # "other", ignored through reduce_zero_label
            colours = np.array([[0, 0, 0], [230, 180, 90], [90, 90, 90],
                                [40, 40, 220]], np.uint8)
            image = colours[label] + rng.integers(0, 20, (48, 48, 3),
                                                  dtype=np.uint8)
            cv2.imwrite(str(tmp_path / 'data' / 'images' / split /
                            f'{i}.jpg'), image)
            cv2.imwrite(str(tmp_path / 'data' / 'annotations' / split /
                            f'{i}.png'), label)
    options = _documented_options(tmp_path / 'data', classes) + [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2'
    ] + [
        f'{loader}.{key}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
        for key in ('num_workers=0', 'persistent_workers=False')
    ]
    assert 'model.decode_head.num_classes=3' in options
    train(TOY, tmp_path / 'work', '--cfg-options', *options)
    proc = run_cli(sys.executable, 'tools/test.py', TOY,
                   tmp_path / 'work' / 'iter_2.pth', '--work-dir',
                   tmp_path / 'eval', '--cfg-options', *options)
    for name in classes:
        assert re.search(rf'\|\s*{name}\s*\|', proc.stdout + proc.stderr)
    assert 0 <= eval_json(tmp_path / 'eval')['metrics']['mIoU'] <= 100
    checkpoint = read_checkpoint(tmp_path / 'work' / 'iter_2.pth')
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == classes
    state = checkpoint['state_dict']
    assert state['decode_head.conv_seg.weight'].shape[0] == 3
    assert state['auxiliary_head.conv_seg.weight'].shape[0] == 3


@pytest.mark.skipif(
    os.environ.get('MMSEG_SLOW_TESTS') != '1',
    reason='the full quick start takes minutes; MMSEG_SLOW_TESTS=1 runs it')
def test_quickstart_reaches_60_miou_within_10_minutes(tmp_path):
    start = time.time()
    proc = run_cli('bash', 'tools/misc/quickstart.sh', tmp_path / 'work',
                   timeout=900)
    minutes = (time.time() - start) / 60
    plain = float(re.search(r'single scale: mIoU: ([\d.]+)',
                            proc.stdout).group(1))
    multi = float(re.search(r'aug-test:\s+mIoU: ([\d.]+)',
                            proc.stdout).group(1))
    print(f'quick start: {minutes:.1f} min, mIoU {plain} / {multi} (MS)')
    assert plain >= 60 and multi >= 60
    # a few lines on the console, the tools' output in the log
    assert len(proc.stdout.strip().splitlines()) <= 15, proc.stdout
    assert 'Iter(train) [200/200]' in (tmp_path / 'work' /
                                       'quickstart.log').read_text()
    assert minutes < 10
    assert cv2.imread(str(tmp_path / 'work' / 'demo' /
                          'quickstart_demo.png')) is not None
