"""The guards of mmseg.engine.overrides: every reliance on mmengine/PyTorch
internals refuses, with a message naming the override and the versions, to
run on a version outside the tested range or without a private name it
uses; on the installed versions they pass."""
import uuid
import warnings

import pytest
import torch
from mmengine.hooks import CheckpointHook
from torch.utils.data import DataLoader

from mmseg.engine import SegRunner, UnsupportedInternalsError, overrides
from mmseg.engine.hooks import SegCheckpointHook
from mmseg.utils.errors import SenFormerError


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    # each test sees the checks run again (they are cached per process)
    monkeypatch.setattr(overrides, '_checked', set())
    monkeypatch.delenv(overrides.ALLOW_UNTESTED_ENV, raising=False)


def _pretend(monkeypatch, package, version):
    real = overrides.installed_version
    monkeypatch.setattr(
        overrides, 'installed_version',
        lambda name: version if name == package else real(name))


class _Toy(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.conv(inputs)


def _runner(tmp_path):
    from mmengine.model import BaseModel

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.toy = _Toy()

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return self.toy(inputs)

    # a name of its own: two runners built in one second would share one
    return SegRunner(model=Model(), work_dir=str(tmp_path), resume=True,
                     experiment_name=f'overrides_{uuid.uuid4().hex[:8]}')


def test_installed_versions_pass_every_override(tmp_path):
    for override in overrides.OVERRIDES:
        overrides.check(override)
    resume = overrides.ResumeState(_runner(tmp_path))
    assert resume.pending and resume.load_from is None
    loader = overrides.watch_dataloader(
        DataLoader(list(range(4)), num_workers=1))
    assert isinstance(loader, overrides.WatchedDataLoader)
    assert list(loader) == [torch.tensor(i) for i in range(4)]


@pytest.mark.parametrize('override,package,version', [
    (overrides.RUNNER_RESUME, 'mmengine', '0.11.0'),
    (overrides.CHECKPOINT_HOOK, 'mmengine', '0.9.1'),
    (overrides.WATCHED_DATALOADER, 'torch', '2.14.0'),
])
def test_untested_version_fails_loudly(monkeypatch, override, package,
                                       version):
    _pretend(monkeypatch, package, version)
    low, high = overrides.TESTED_VERSIONS[package]
    with pytest.raises(UnsupportedInternalsError) as error:
        overrides.check(override)
    message = str(error.value)
    assert override.name in message
    assert f'{package} {version} is installed' in message
    assert f'>={low},<{high}' in message
    assert overrides.ALLOW_UNTESTED_ENV in message
    # the command line prints it as one "error: ..." line
    assert isinstance(error.value, SenFormerError)


def test_allow_untested_turns_the_version_check_into_a_warning(monkeypatch):
    _pretend(monkeypatch, 'torch', '3.0.0')
    monkeypatch.setenv(overrides.ALLOW_UNTESTED_ENV, '1')
    with pytest.warns(UserWarning, match='torch 3.0.0 is installed'):
        loader = overrides.watch_dataloader(
            DataLoader(list(range(2)), num_workers=1))
    assert isinstance(loader, overrides.WatchedDataLoader)


def test_loader_without_workers_needs_no_internals(monkeypatch):
    _pretend(monkeypatch, 'torch', '3.0.0')
    loader = DataLoader(list(range(2)))
    assert overrides.watch_dataloader(loader) is loader
    assert type(loader) is DataLoader


def test_missing_private_method_is_named(monkeypatch):
    monkeypatch.delattr(CheckpointHook, '_save_checkpoint_with_step')
    with pytest.raises(UnsupportedInternalsError,
                       match='needs _save_checkpoint_with_step of '
                       'CheckpointHook'):
        overrides.check(overrides.CHECKPOINT_HOOK)


def test_missing_private_method_of_torch_is_named(monkeypatch):
    iterator = torch.utils.data.dataloader._MultiProcessingDataLoaderIter
    monkeypatch.delattr(iterator, '_try_get_data')
    with pytest.raises(UnsupportedInternalsError,
                       match=r'_try_get_data of .*torch 2\.'):
        overrides.watch_dataloader(DataLoader([0], num_workers=1))


def test_missing_private_runner_attribute_is_named(tmp_path):

    class RunnerWithoutFlag(SegRunner):
        pass

    runner = _runner(tmp_path)
    runner.__class__ = RunnerWithoutFlag
    del runner._has_loaded
    with pytest.raises(UnsupportedInternalsError,
                       match='needs _has_loaded of RunnerWithoutFlag'):
        overrides.ResumeState(runner)


def test_hook_without_its_bookkeeping_is_refused(tmp_path):
    hook = SegCheckpointHook(interval=1)
    # before_train sets its file backend (and max_keep_ckpts' record)
    with pytest.raises(UnsupportedInternalsError, match='file_backend'):
        overrides.save_checkpoint_now(hook, runner=None)


def test_every_override_documents_itself():
    for override in overrides.OVERRIDES:
        assert override.package in overrides.TESTED_VERSIONS
        assert 'https://github.com/' in override.upstream
        assert len(override.changes) > 100
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for override in overrides.OVERRIDES:
            overrides.check(override)
