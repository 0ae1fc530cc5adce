"""Helpers of the tests that run the command-line tools on the toy config
with a tiny synthetic dataset (reliability, faults, preemption, data
checks): writing configs, running tools in-process or as subprocesses,
reading their output. Not a test module: the test modules import it, and
``conftest.py`` builds its shared fixtures (``toy_root``, ``toy_state``,
``toy_root_4``) with it.
"""
import glob
import hashlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import uuid

from mmseg import cli

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CONFIG = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
                      'senformer_fpnt_r18_toy.py')

# The toy config made fast: 64x64 crops, batch 2, no validation.
CONFIG_TEMPLATE = '''
_base_ = [{toy!r}]
data_root = {root!r}
crop_size = (64, 64)
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(64, 64), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2, num_workers={workers}, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root))
train_cfg = dict(max_iters={iters}, val_interval=1000)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval={interval}, save_best=None))
log_processor = dict(by_epoch=False, window_size=1)
'''


def load_tool(relpath: str):
    """A tool script as a module (its ``main`` is what the command runs)."""
    name = 'tool_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO_ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_toy(root: str, num_train: int = 2, num_val: int = 2) -> str:
    toy = load_tool('tools/misc/generate_toy_dataset.py')
    toy.generate(root, num_train, num_val, 64, 0)
    return root


def write_config(directory, data_root, workers=0, iters=1, interval=1,
                 extra='') -> str:
    """A config file (unique name, so in-process runs get their own log)."""
    path = osp.join(str(directory), f'cfg_{uuid.uuid4().hex[:8]}.py')
    with open(path, 'w') as f:
        f.write(
            CONFIG_TEMPLATE.format(
                toy=TOY_CONFIG, root=str(data_root), workers=workers,
                iters=iters, interval=interval) + extra)
    return path


def sha256(path) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(directory) -> dict:
    """``{relative path: sha256}`` of every file under ``directory``."""
    found = {}
    if not osp.isdir(str(directory)):
        return found
    for root, _, files in os.walk(str(directory)):
        for name in files:
            path = osp.join(root, name)
            found[osp.relpath(path, str(directory))] = sha256(path)
    return found


TRAIN = load_tool('tools/train.py')
TEST = load_tool('tools/test.py')
IMAGE_DEMO = load_tool('demo/image_demo.py')


def run_tool(tool, argv, capsys):
    """``python tool argv``: (exit status, stderr, stdout)."""
    code = cli.run(tool.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def error_line(stderr: str) -> str:
    """The single ``error:`` line; no traceback around it."""
    lines = [line for line in stderr.splitlines()
             if line.startswith('error')]
    assert len(lines) == 1, stderr
    assert 'Traceback' not in stderr, stderr
    return lines[0]


def train(data_root, tmp_path, capsys, *options, extra='', workers=0,
          iters=1, interval=1, work_dir=None):
    """``tools/train.py`` on the fast toy config; the dataset (and the
    config) must come out of it unchanged, whatever happened."""
    cfg = write_config(tmp_path, data_root, workers, iters, interval, extra)
    work_dir = work_dir or str(tmp_path / 'work')
    before = snapshot(data_root), sha256(cfg)
    result = run_tool(TRAIN, [cfg, '--work-dir', work_dir, *options], capsys)
    assert (snapshot(data_root), sha256(cfg)) == before
    return result


TRAIN_SCRIPT = osp.join(REPO_ROOT, 'tools', 'train.py')


def listing(directory):
    return sorted(os.listdir(str(directory)))


def subprocess_env(**extra):
    """The environment of tool subprocesses: one thread, no GPU, this
    checkout first on the path."""
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=REPO_ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    env.update(extra)
    return env


def start_python(args, log, **env):
    """A Python subprocess in the repository root, output to ``log``."""
    return subprocess.Popen([sys.executable] + args, env=subprocess_env(**env),
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                            cwd=REPO_ROOT)


def log_tail(path, n=3000):
    with open(path) as f:
        return f.read()[-n:]


def logged_scalars(work_dir, newest_run_only=False):
    """``{step: scalars}`` from the runs' ``vis_data/scalars.json``."""
    runs = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                     'scalars.json')))
    assert runs, f'no scalars.json under {work_dir}'
    steps = {}
    for path in runs[-1:] if newest_run_only else runs:
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                steps[record['step']] = record
    return steps
