"""Shared test helpers: locations of the repository and of the reference
figures the tests check against.

``tests/data/spec`` holds the published implementation's figures: its
hyper-parameters (``seed_configs.json``), parameter counts, checkpoint key
lists, forward-pass fingerprints and recorded training steps
(``reference_outputs/``, with the deterministic-weights module ``detw.py``
that produced them). They are committed, so every test runs from a clone
anywhere.
"""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SPEC = osp.join(REPO_ROOT, 'tests', 'data', 'spec')
REFERENCE_OUTPUTS = osp.join(SPEC, 'reference_outputs')
CONFIG_ROOT = osp.join(REPO_ROOT, 'senformer_configs')


def load_detw():
    """The deterministic-weights module the reference outputs were made
    with."""
    if REFERENCE_OUTPUTS not in sys.path:
        sys.path.insert(0, REFERENCE_OUTPUTS)
    import detw
    return detw
