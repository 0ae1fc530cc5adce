"""The set-up commands of the README: tools/misc/install_missing.sh (used
by tools/misc/quickstart.sh and .ci/run) decides what to install; pip is
replaced by a recorder here, so nothing is installed."""
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPT = osp.join(REPO_ROOT, 'tools', 'misc', 'install_missing.sh')


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def sandbox(tmp_path):
    """A python whose ``-m pip`` only records its arguments, an
    ``nvidia-smi`` that answers as told, and a folder to hide packages."""
    pip_log = tmp_path / 'pip.log'
    python = _executable(tmp_path / 'python', f'''#!/bin/bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  shift 2; echo "$*" >> {pip_log}; exit 0
fi
exec {sys.executable} "$@"
''')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    hidden = tmp_path / 'hidden'
    hidden.mkdir()

    def run(gpu=False, hide=(), extras=('tests', )):
        _executable(bin_dir / 'nvidia-smi',
                    '#!/bin/sh\necho "GPU 0: fake"\nexit 0\n' if gpu else
                    '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n')
        for package in hide:
            os.makedirs(hidden / package, exist_ok=True)
            (hidden / package / '__init__.py').write_text(
                f'raise ImportError("{package} hidden by the test")\n')
        env = dict(os.environ, PYTHON=python,
                   PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                   PYTHONPATH=os.pathsep.join([str(hidden), REPO_ROOT]))
        if pip_log.exists():
            pip_log.unlink()
        proc = subprocess.run(['bash', SCRIPT, *extras], env=env,
                              capture_output=True, text=True, timeout=120)
        calls = pip_log.read_text().splitlines() if pip_log.exists() else []
        return proc, calls

    return run


def test_an_installed_torch_is_kept_and_nothing_installed(sandbox):
    import torch
    proc, calls = sandbox(gpu=False)
    assert proc.returncode == 0, proc.stderr
    assert f'torch {torch.__version__} is installed: kept' in proc.stdout
    assert 'senformer and its requirements are installed' in proc.stdout
    assert calls == []


def test_without_gpu_the_cpu_build_of_torch(sandbox):
    proc, calls = sandbox(gpu=False, hide=['torch'])
    assert proc.returncode == 0, proc.stderr
    assert 'no NVIDIA GPU: the CPU build' in proc.stdout
    assert len(calls) == 1 and calls[0].startswith('install --quiet '
                                                   'torch==2.13.0+cpu ')
    assert '--extra-index-url' in calls[0]


def test_with_a_gpu_the_default_build_of_torch(sandbox):
    proc, calls = sandbox(gpu=True, hide=['torch'])
    assert proc.returncode == 0, proc.stderr
    assert 'an NVIDIA GPU is present' in proc.stdout
    assert calls == ['install --quiet torch==2.13.0']


def test_mmseg_from_elsewhere_installs_this_checkout_with_extras(
        sandbox, tmp_path):
    proc, calls = sandbox(hide=['mmseg'], extras=('tests', 'optional'))
    assert proc.returncode == 0, proc.stderr
    assert calls[-1] == 'install --quiet -e .[tests,optional]'
    assert 'missing: ' in proc.stdout and 'mmseg' in proc.stdout


def test_an_unknown_extra_gives_one_line(sandbox):
    proc, calls = sandbox(extras=('testz', ))
    assert proc.returncode == 2 and calls == []
    assert proc.stderr.strip() == ("error: no extra named 'testz' (there "
                                   'are: optional tests)')


@pytest.mark.slow
def test_quickstart_names_the_failed_step_and_its_log(tmp_path):
    work = tmp_path / 'work'
    proc = subprocess.run(
        ['bash', 'tools/misc/quickstart.sh', str(work), '--cfg-options',
         'no_such_key=1'], cwd=REPO_ROOT, capture_output=True, text=True,
        env=dict(os.environ, SENFORMER_SKIP_INSTALL='1'), timeout=300)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith('[2/6] synthetic dataset in data/toy') and \
        lines[0].endswith(' s)')
    assert lines[-1].startswith('[3/6] training the toy SenFormer') and \
        lines[-1].endswith('failed')
    log = work / 'quickstart.log'
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: quick start step '[3/6] training the toy SenFormer' failed; "
        f'the full log is {log}')
    assert 'no_such_key' in proc.stderr  # the tool's own error line
    assert 'error: --cfg-options no_such_key' in log.read_text()
