"""``mmseg/utils`` is the bottom layer: every package may import it, so it
imports none of them back.

Its modules may import, when they are imported, only the standard library,
torch, numpy, mmengine, mmcv, other modules of ``mmseg.utils`` and
``mmseg.structures`` (the data sample the type aliases name, which itself
imports only mmengine). Imports inside functions are free
(``register_all_modules`` imports every package when called, as in
MMSegmentation). The sources are parsed, not imported, so an import that
the test session already made cannot hide one.
"""
import ast
import glob
import os.path as osp
import sys
import textwrap
from typing import Iterator, List, Tuple

import pytest

from conftest import REPO_ROOT

ALLOWED_THIRD_PARTY = frozenset(['torch', 'numpy', 'mmengine', 'mmcv'])
# what of mmseg the bottom layer may import: itself, the data sample (a leaf
# too, checked as well) and the version
ALLOWED_MMSEG = frozenset(['utils', 'structures', 'version'])


def _package_of(path: str) -> str:
    """``mmseg/utils/errors.py`` (or its ``__init__.py``) -> ``mmseg.utils``,
    the package its relative imports start from."""
    return '.'.join(osp.dirname(osp.relpath(path, REPO_ROOT)).split(osp.sep))


def _absolute(node: ast.ImportFrom, package: str) -> List[str]:
    """The modules a ``from ... import ...`` may load, as absolute names."""
    if node.level:
        base = package.split('.')
        if node.level > 1:
            base = base[:-(node.level - 1)]
        prefix = '.'.join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    # ``from mmseg import models`` loads mmseg.models
    return [prefix] + [f'{prefix}.{alias.name}' for alias in node.names]


def _import_time_statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every statement run when the module is imported: all but function
    bodies (class bodies, ``if``/``try`` blocks at module level count)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.Lambda)):
            # the decorators and default values run at import, the body not
            todo.extend(node.decorator_list)
            if not isinstance(node, ast.Lambda):
                todo.extend(node.args.defaults + node.args.kw_defaults)
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def imports_at_import_time(source: str, package: str) -> List[Tuple[int, str]]:
    """``(line, module)`` of what a module's source imports when it is
    imported, with relative imports made absolute, including
    ``importlib.import_module('...')`` and ``__import__('...')`` with a
    constant name."""
    found = []
    for node in _import_time_statements(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, name)
                      for name in _absolute(node, package) if name]
        elif isinstance(node, ast.Call) and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(
                    node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else \
                getattr(func, 'id', None)
            if name in ('import_module', '__import__'):
                found.append((node.lineno, node.args[0].value))
    return found


def layering_violations(source: str, package: str) -> List[str]:
    """What a module of ``mmseg.utils`` (or of a package it may import)
    imports at import time beyond what the bottom layer may."""
    problems = {}  # one per statement
    for line, module in imports_at_import_time(source, package):
        parts = module.split('.')
        if parts[0] == 'mmseg':
            if len(parts) > 1 and parts[1] not in ALLOWED_MMSEG:
                problems.setdefault(line, f'line {line}: {module}')
        elif parts[0] not in ALLOWED_THIRD_PARTY and \
                parts[0] not in sys.stdlib_module_names:
            problems.setdefault(line, f'line {line}: {module} (third-party)')
    return list(problems.values())


def _modules(package_dir: str) -> List[str]:
    return sorted(
        glob.glob(osp.join(REPO_ROOT, 'mmseg', package_dir, '**', '*.py'),
                  recursive=True))


@pytest.mark.parametrize('package', ['utils', 'structures'])
def test_bottom_layer_imports_no_package_above_it(package):
    paths = _modules(package)
    assert paths, f'no modules found in mmseg/{package}'
    problems = {}
    for path in paths:
        with open(path, encoding='utf-8') as f:
            found = layering_violations(f.read(), _package_of(path))
        if found:
            problems[osp.relpath(path, REPO_ROOT)] = found
    assert not problems, problems


@pytest.mark.parametrize('source', [
    'from mmseg.models import MODELS',
    'import mmseg.engine.safe_load as safe_load',
    'from .. import datasets',
    'from ..evaluation.metrics import IoUMetric',
    'from mmseg import apis',
    'try:\n    import mmseg.visualization\nexcept ImportError:\n    pass',
    'if True:\n    from mmseg.cli import run',
    'class A:\n    from mmseg.engine import SegRunner',
    'import importlib\nmodels = importlib.import_module("mmseg.models")',
    'x = __import__("mmseg.apis")',
    'def f(x=__import__("mmseg.engine")):\n    pass',
    'import cv2',
])
def test_the_check_finds_imports_of_upper_packages(source):
    problems = layering_violations(source, 'mmseg.utils')
    assert len(problems) == 1, (source, problems)


def test_the_check_allows_what_the_bottom_layer_may_import():
    source = textwrap.dedent('''\
        import os
        from typing import Dict
        import torch
        import numpy as np
        from mmengine.config import Config
        from mmcv.transforms import BaseTransform
        from .errors import SenFormerError
        from mmseg.structures import SegDataSample

        def register_all_modules():
            import mmseg.models  # when called, not when imported
            from mmseg import engine, datasets
        ''')
    assert layering_violations(source, 'mmseg.utils') == []

