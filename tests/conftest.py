"""Shared test helpers: locations of the repository and of the reference
figures the tests check against.

``tests/data/spec`` holds the published implementation's figures: its
hyper-parameters (``seed_configs.json``), parameter counts, checkpoint key
lists, forward-pass fingerprints and recorded training steps
(``reference_outputs/``, with the deterministic-weights module ``detw.py``
that produced them). They are committed, so every test runs from a clone
anywhere.
"""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SPEC = osp.join(REPO_ROOT, 'tests', 'data', 'spec')
REFERENCE_OUTPUTS = osp.join(SPEC, 'reference_outputs')
# reference material of the development set-up, not part of the project;
# the few tests that read it skip without it
SHARED = osp.join(osp.dirname(REPO_ROOT), 'shared')
CONFIG_ROOT = osp.join(REPO_ROOT, 'senformer_configs')


def load_detw():
    """The deterministic-weights module the reference outputs were made
    with."""
    if REFERENCE_OUTPUTS not in sys.path:
        sys.path.insert(0, REFERENCE_OUTPUTS)
    import detw
    return detw


def run_cli(*args, env=None, check=True, timeout=300):
    """Run a command in the repository root (extra environment ``env``);
    returns the CompletedProcess, or fails the test with the end of its
    output when ``check`` and it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=REPO_ROOT, capture_output=True,
        text=True, env=dict(os.environ, **(env or {})), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(map(str, args))} exited {proc.returncode}:\n'
            f'{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process group's master)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def keep_torch_global_state():
    """In-process runs of the tools must not leave deterministic mode,
    threads or mmengine's loggers behind (modules running tools in-process
    use it: ``pytestmark = pytest.mark.usefixtures(...)``)."""
    import torch
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    # a run's loggers write to this test's captured stdout, closed once the
    # test ends; a new process (what the tools are) starts without them
    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    MMLogger._instance_dict.clear()


# ----------------------------------------------------------------------
# toy datasets and model of the tool tests (helpers in toy_runs.py)


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    """The toy dataset (2 training and 2 validation images), read-only."""
    from toy_runs import generate_toy
    return generate_toy(str(tmp_path_factory.mktemp('toy') / 'data'))


@pytest.fixture(scope='module')
def toy_root_4(tmp_path_factory):
    """The toy dataset with 4 training images: with batch 2 the sampler's
    second pass (iterations 3-4) reshuffles, so the data order after
    resuming is really checked."""
    from toy_runs import generate_toy
    return generate_toy(str(tmp_path_factory.mktemp('toy') / 'data'),
                        num_train=4)


@pytest.fixture(scope='module')
def toy_state(toy_root, tmp_path_factory):
    """The toy model's state dict (what a real checkpoint holds)."""
    from mmseg.apis import init_model
    from mmseg import cli
    from toy_runs import write_config
    cfg = write_config(tmp_path_factory.mktemp('cfg'), toy_root)
    return init_model(cli.load_config(cfg)).state_dict()
