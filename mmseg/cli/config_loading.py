"""Reading a tool's config, with errors that name the culprit.

:func:`load_config` turns a missing file, a syntax error (with the real
file and line, also inside a ``_base_`` file), a config whose code fails and
a ``--cfg-options`` key that matches nothing into :class:`ConfigError`; it
returns the config and keeps no copy of it.
"""
import ast
import difflib
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config

from mmseg.utils.errors import SenFormerError

# Top-level keys that mmengine's Runner (or our tools) read although
# configs rarely set them, so --cfg-options may add them.
RUNNER_KEYS = frozenset([
    'auto_scale_lr', 'compile', 'custom_hooks', 'custom_imports',
    'data_preprocessor', 'default_hooks', 'default_scope', 'env_cfg',
    'experiment_name', 'find_unused_parameters', 'launcher', 'load_from',
    'log_level', 'log_processor', 'model', 'model_wrapper_cfg',
    'optim_wrapper', 'param_scheduler', 'randomness', 'resume', 'runner_type',
    'sync_bn', 'test_cfg', 'test_dataloader', 'test_evaluator', 'train_cfg',
    'train_dataloader', 'tta_model', 'tta_pipeline', 'val_cfg',
    'val_dataloader', 'val_evaluator', 'visualizer', 'work_dir'
])

# Entries that mmengine fills in when a config leaves them out, so
# --cfg-options may set something inside them even then.
RUNNER_DEFAULTS = {
    'default_hooks': frozenset(['runtime_info', 'timer', 'sampler_seed',
                                'logger', 'param_scheduler', 'checkpoint']),
    'env_cfg': frozenset(['cudnn_benchmark', 'mp_cfg', 'dist_cfg']),
}


class ConfigError(SenFormerError, ValueError):
    """The config file or a ``--cfg-options`` override is wrong."""


def _base_files(path: str) -> List[str]:
    """The ``_base_`` files a python config names (string or list form)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            values = [value] if isinstance(value, str) else list(value)
            return [
                osp.normpath(osp.join(osp.dirname(path), v)) for v in values
                if isinstance(v, str)
            ]
    return []


def _find_syntax_error(path: str,
                       seen: Optional[set] = None) -> Optional[SyntaxError]:
    """The first syntax error in a python config or its ``_base_`` files,
    with its real file name (mmengine's message only has the line)."""
    seen = set() if seen is None else seen
    if path in seen or not path.endswith('.py') or not osp.isfile(path):
        return None
    seen.add(path)
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        compile(source, path, 'exec', dont_inherit=True)
    except SyntaxError as e:
        return e
    for base in _base_files(path):
        found = _find_syntax_error(base, seen)
        if found is not None:
            return found
    return None


def syntax_message(error: SyntaxError) -> str:
    """``syntax error in config FILE, line N: MESSAGE: TEXT``."""
    where = f'{error.filename}, line {error.lineno}'
    text = (error.text or '').strip()
    return f'syntax error in config {where}: {error.msg}' + (
        f': {text}' if text else '')


def _child(node, part: str):
    """``node[part]`` for a dict or (with a numeric part) a list/tuple;
    raises KeyError when there is no such entry."""
    if isinstance(node, dict):
        if part in node:
            return node[part]
        raise KeyError(part)
    if isinstance(node, (list, tuple)) and part.lstrip('-').isdigit() \
            and -len(node) <= int(part) < len(node):
        return node[int(part)]
    raise KeyError(part)


def check_cfg_options(cfg: Config, options: Dict[str, object]) -> None:
    """Reject ``--cfg-options`` keys that match nothing in ``cfg``.

    A key is accepted when everything but its last part exists; the last
    part may be new for a dict (a new argument, e.g.
    ``model.test_cfg.return_learners``). At the top level only existing keys
    and those the Runner reads (:data:`RUNNER_KEYS`) are accepted, and the
    entries mmengine adds by default (:data:`RUNNER_DEFAULTS`, e.g.
    ``default_hooks.checkpoint``) may be set even when the config has none.

    Raises:
        ConfigError: naming the unknown part and the closest existing keys.
    """
    for key in options:
        parts = key.split('.')
        node = cfg._cfg_dict if isinstance(cfg, Config) else cfg
        if parts[0] not in node and parts[0] in RUNNER_KEYS:
            continue
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            try:
                node = _child(node, part)
                continue
            except KeyError:
                pass
            if last and depth > 0 and isinstance(node, dict):
                break  # a new entry of an existing dict
            if depth == 1 and part in RUNNER_DEFAULTS.get(parts[0], ()):
                break  # inside an entry that mmengine adds by default
            where = '.'.join(parts[:depth]) or 'the config'
            if isinstance(node, dict):
                known = set(node.keys())
                known |= RUNNER_KEYS if depth == 0 else \
                    RUNNER_DEFAULTS.get(parts[0], set()) if depth == 1 \
                    else set()
                close = difflib.get_close_matches(part, sorted(known), n=3)
                hint = f'did you mean {", ".join(close)}?' if close else \
                    f'it has {", ".join(sorted(map(str, node))[:8])}' + (
                        ', ...' if len(node) > 8 else '')
                raise ConfigError(
                    f'--cfg-options {key}: {where} has no key {part!r} '
                    f'({hint})')
            if isinstance(node, (list, tuple)):
                raise ConfigError(
                    f'--cfg-options {key}: {where} is a list of '
                    f'{len(node)} items; {part!r} is not an index of it')
            raise ConfigError(
                f'--cfg-options {key}: {where} is a '
                f'{type(node).__name__} ({node!r}), it has no key {part!r}')


def load_config(path: str,
                cfg_options: Optional[Dict[str, object]] = None) -> Config:
    """Read a config file and apply ``--cfg-options``, with clear errors.

    Args:
        path: config file.
        cfg_options: overrides (``DictAction`` output), checked with
            :func:`check_cfg_options` before merging.

    Returns:
        The config. To have errors raised while building from it name the
        config key at fault, run that code inside
        :func:`mmseg.cli.attach_config_to_errors`.

    Raises:
        ConfigError: the file (or one of its ``_base_`` files) does not
            exist, has a syntax error (file and line) or fails to evaluate,
            or an override key matches nothing.
    """
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}' + (
            ' (it is a folder)' if osp.isdir(path) else ''))
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:
        real = _find_syntax_error(osp.abspath(path)) or e
        raise ConfigError(syntax_message(real)) from e
    except FileNotFoundError as e:
        missing = e.filename or str(e)
        raise ConfigError(
            f'config {path} needs {missing}, which does not exist (check '
            'its _base_ list)') from e
    except Exception as e:  # the config's code itself failed
        raise ConfigError(
            f'config {path} (or one of its _base_ files) failed to '
            f'evaluate: {type(e).__name__}: {e}') from e
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    return cfg
