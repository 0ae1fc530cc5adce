"""Shared test helpers: locations of the repository and the spec material."""
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO_ROOT), 'shared')
SPEC = osp.join(SHARED, 'spec')
CONFIG_ROOT = osp.join(REPO_ROOT, 'senformer_configs')


def require_spec() -> str:
    """Path of ../shared/spec, or skip the test with the reason."""
    if not osp.isdir(SPEC):
        pytest.skip(f'spec material not found at {SPEC} (../shared/spec '
                    'beside the repository)')
    return SPEC


def load_detw():
    """The reference deterministic-weights module of the spec."""
    ref_dir = osp.join(require_spec(), 'reference_outputs')
    if ref_dir not in sys.path:
        sys.path.insert(0, ref_dir)
    import detw
    return detw


@pytest.fixture
def spec_dir():
    return require_spec()
