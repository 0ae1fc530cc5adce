"""SegRunner: resume under weights-only loading, SyncBN handling, and
2-process distributed training on CPU (gloo) through torchrun."""
import glob
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import textwrap
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

from mmseg.engine import (SegRunner, count_sync_batchnorm, init_cpu_dist,
                          load_checkpoint, revert_sync_batchnorm_if_needed,
                          safe_load, safe_torch_load)
from mmseg.registry import HOOKS
from conftest import free_port

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# The toy model, also written into the torchrun worker script below.
TOY_MODEL_SOURCE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmseg.registry import DATASETS, MODELS


class _ToyHead(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.conv_seg = nn.Conv2d(4, num_classes, 1)


@MODELS.register_module(force=True)
class EngineTestToySegmentor(BaseModel):
    """conv + SyncBN + 1x1 classifier; data are dicts of tensors."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.SyncBatchNorm(4), nn.ReLU())
        self.decode_head = _ToyHead(num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.decode_head.conv_seg(self.backbone(inputs))
        if mode == 'loss':
            return dict(loss_ce=F.cross_entropy(logits, data_samples))
        if mode == 'predict':
            return list(logits.argmax(1))
        return logits


@DATASETS.register_module(force=True)
class EngineTestToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b', 'c'), palette=[[0, 0, 0]] * 3)

    def __len__(self):
        return 16

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(3, 8, 8, generator=g),
                    data_samples=torch.randint(0, 3, (8, 8), generator=g))
'''
exec(TOY_MODEL_SOURCE)


@HOOKS.register_module(force=True)
class EngineTestIterCounter(Hook):
    """Counts the training iterations a run really executes."""

    def __init__(self):
        self.iters = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.iters += 1


def toy_cfg(work_dir, max_iters=4, **kwargs):
    cfg = dict(
        default_scope='mmseg',
        model=dict(type='EngineTestToySegmentor'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='EngineTestToyDataset'),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=[
            dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                 end=max_iters, by_epoch=False)
        ],
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=2),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='EngineTestIterCounter')],
        randomness=dict(seed=0),
        log_level='INFO',
        # runners built within one second would share the timestamp name,
        # hence the logger and its file
        experiment_name=f'engine-test-{uuid.uuid4().hex}')
    cfg.update(kwargs)
    return Config(cfg)


def _counter(runner):
    return next(h for h in runner.hooks
                if isinstance(h, EngineTestIterCounter))


def _log_lines(work_dir, pattern):
    logs = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    assert logs, f'no log file under {work_dir}'
    lines = []
    for log in logs:
        with open(log) as f:
            lines += [line for line in f if pattern in line]
    return lines


def test_resume_with_weights_only_loading(tmp_path, monkeypatch):
    runner = SegRunner.from_cfg(toy_cfg(tmp_path, max_iters=4))
    runner.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.exists() and (tmp_path / 'iter_4.pth').exists()

    # the file needs our allowlist: plain torch.load refuses it
    plain = subprocess.run(
        [sys.executable, '-c', 'import sys, torch; torch.load(sys.argv[1])',
         str(ckpt)], capture_output=True, text=True)
    assert plain.returncode != 0
    assert 'HistoryBuffer' in plain.stderr or 'numpy' in plain.stderr
    loaded = safe_torch_load(str(ckpt))
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)

    resumed = SegRunner.from_cfg(
        toy_cfg(tmp_path / 'resumed', max_iters=6, load_from=str(ckpt),
                resume=True))
    resumed.train()
    assert _counter(resumed).iters == 4  # iterations 3..6 only
    assert resumed.iter == 6
    history = resumed.message_hub.get_scalar('train/loss')
    assert len(history.data[0]) == 2 + 4  # logged losses carried over
    assert _log_lines(tmp_path / 'resumed', 'resumed epoch: 0, iter: 2')

    # mmengine's own Runner resumes through the same weights-only loader
    loads = []
    real_load = safe_load.safe_torch_load
    monkeypatch.setattr(
        safe_load, 'safe_torch_load',
        lambda *args, **kwargs: loads.append(args[0]) or real_load(
            *args, **kwargs))
    plain = Runner.from_cfg(
        toy_cfg(tmp_path / 'plain', max_iters=5,
                load_from=str(tmp_path / 'iter_4.pth'), resume=True))
    plain.train()
    assert _counter(plain).iters == 1 and plain.iter == 5
    assert loads == [str(tmp_path / 'iter_4.pth')]


def test_load_from_other_number_of_classes(tmp_path):
    runner = SegRunner.from_cfg(toy_cfg(tmp_path / 'a', max_iters=2))
    runner.train()
    source = runner.model.state_dict()
    other = SegRunner.from_cfg(
        toy_cfg(tmp_path / 'b', max_iters=2,
                model=dict(type='EngineTestToySegmentor', num_classes=5),
                load_from=str(tmp_path / 'a' / 'iter_2.pth')))
    other.load_or_resume()
    loaded = other.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.items()
               if 'conv_seg' not in k)
    report = _log_lines(tmp_path / 'b', 'does not match the model')
    assert len(report) == 1 and '2 shape mismatches' in report[0]
    assert _log_lines(tmp_path / 'b', 'only the classifier layers differ')


def test_sync_bn_reverted_with_one_log_line(tmp_path):
    runner = SegRunner.from_cfg(toy_cfg(tmp_path, max_iters=1))
    assert count_sync_batchnorm(runner.model) == 0
    lines = _log_lines(tmp_path, 'SyncBatchNorm')
    assert len(lines) == 1, lines
    assert 'Converted 1 SyncBatchNorm layers to BatchNorm (not ' \
        'distributed)' in lines[0]
    assert not _log_lines(tmp_path, 'Distributed training is not used')


def test_revert_helper(caplog):
    logger = logging.getLogger('engine-test-sync-bn')
    caplog.set_level(logging.INFO, logger=logger.name)
    model = EngineTestToySegmentor()  # noqa: F821
    assert count_sync_batchnorm(model) == 1
    model = revert_sync_batchnorm_if_needed(model, False, logger=logger)
    assert count_sync_batchnorm(model) == 0
    assert caplog.messages == [
        'Converted 1 SyncBatchNorm layers to BatchNorm (not distributed).'
    ]
    caplog.clear()  # nothing left to convert: no message
    revert_sync_batchnorm_if_needed(model, False, logger=logger)
    assert caplog.messages == []
    if not torch.cuda.is_available():
        model = revert_sync_batchnorm_if_needed(
            EngineTestToySegmentor(), True, logger=logger)  # noqa: F821
        assert count_sync_batchnorm(model) == 0
        assert len(caplog.messages) == 1
        assert 'distributed on CPU' in caplog.messages[0]


def test_init_cpu_dist_reads_launcher_env(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))
    # init_cpu_dist exports RANK etc.; keep them out of the other tests
    monkeypatch.setattr(os, 'environ', os.environ.copy())
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(KeyError, match='environment variable RANK'):
        init_cpu_dist('pytorch')

    monkeypatch.setenv('SLURM_PROCID', '3')
    monkeypatch.setenv('SLURM_NTASKS', '4')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1-2]')
    monkeypatch.setenv('MASTER_ADDR', 'node1')
    init_cpu_dist('slurm', timeout=60)
    call = calls.pop()
    assert (call['backend'], call['rank'], call['world_size']) == \
        ('gloo', 3, 4)
    assert call['timeout'].total_seconds() == 60
    assert os.environ['LOCAL_RANK'] == '1'
    assert os.environ['MASTER_PORT'] == '29500'

    with pytest.raises(ValueError, match="'nccl' backend needs CUDA"):
        init_cpu_dist('pytorch', backend='nccl')
    with pytest.raises(ValueError, match="unknown launcher 'local'"):
        init_cpu_dist('local')


WORKER = '''
import json, os, sys
import torch
{toy}
import mmseg.engine.seg_runner as seg_runner
from mmengine.config import Config

work_dir = sys.argv[1]
timeouts = []
real_init = seg_runner.init_cpu_dist


def recording_init(launcher, timeout, backend):
    timeouts.append(timeout)
    real_init(launcher, timeout=timeout, backend=backend)


seg_runner.init_cpu_dist = recording_init
cfg = Config(dict(
    default_scope='mmseg',
    model=dict(type='EngineTestToySegmentor'),
    work_dir=work_dir,
    launcher='pytorch',
    env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=120)),
    train_dataloader=dict(
        dataset=dict(type='EngineTestToyDataset'),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2, num_workers=0, collate_fn=dict(type='default_collate')),
    train_cfg=dict(type='IterBasedTrainLoop', max_iters=3),
    optim_wrapper=dict(type='OptimWrapper',
                       optimizer=dict(type='SGD', lr=0.1)),
    default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                       by_epoch=False, interval=3)),
    randomness=dict(seed=0)))
runner = seg_runner.SegRunner.from_cfg(cfg)
runner.train()
state = runner.model.module.state_dict()
params = {{k: v.sum().item() for k, v in state.items()
          if 'running' not in k and 'num_batches' not in k}}
rank = torch.distributed.get_rank()
with open(os.path.join(work_dir, f'rank{{rank}}.json'), 'w') as f:
    json.dump(dict(timeouts=timeouts,
                   world=torch.distributed.get_world_size(),
                   backend=torch.distributed.get_backend(),
                   wrapper=type(runner.model).__name__, params=params), f)
from mmseg.engine import close_dist
close_dist()
'''



@pytest.mark.skipif(
    not torch.distributed.is_available()
    or not torch.distributed.is_gloo_available(),
    reason='torch built without gloo')
def test_two_process_cpu_training_with_torchrun(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(toy=textwrap.dedent(TOY_MODEL_SOURCE)))
    work_dir = tmp_path / 'work'
    # hide any GPU: this checks the CPU (gloo) path
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=REPO_ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_addr', '127.0.0.1', '--master_port',
         str(free_port()), str(script), str(work_dir)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = []
    for rank in range(2):
        with open(work_dir / f'rank{rank}.json') as f:
            ranks.append(json.load(f))
    for info in ranks:
        assert info['world'] == 2 and info['backend'] == 'gloo'
        assert info['timeouts'] == [120]
        assert info['wrapper'] == 'MMDistributedDataParallel'
    # gradients were averaged: both ranks hold the same weights
    assert ranks[0]['params'] == pytest.approx(ranks[1]['params'])

    lines = _log_lines(work_dir, 'SyncBatchNorm')
    assert len(lines) == 1, lines  # rank 0 writes the log
    assert 'Converted 1 SyncBatchNorm layers to BatchNorm (distributed ' \
        'on CPU' in lines[0]

    model = EngineTestToySegmentor()  # noqa: F821
    model = revert_sync_batchnorm_if_needed(model, distributed=False)
    ckpt = load_checkpoint(model, str(work_dir / 'iter_3.pth'))
    assert ckpt['meta']['iter'] == 3
    assert model.decode_head.conv_seg.weight.sum().item() == pytest.approx(
        ranks[0]['params']['decode_head.conv_seg.weight'], abs=1e-5)
