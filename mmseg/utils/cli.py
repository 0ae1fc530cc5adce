"""Error handling shared by the command-line tools.

A tool's ``main(argv)`` runs under :func:`run`::

    if __name__ == '__main__':
        sys.exit(run(main))

Known bad input (a missing file, a broken dataset, a wrong config key, an
unusable checkpoint, a diverged run, a full disk, a dead dataloader worker)
then ends with one line on stderr that names the culprit,
``error: <what is wrong>``, and a non-zero exit status: 2 for a bad config
or command line, 1 otherwise. The traceback goes to the run's log file (when
a Runner has opened one) and, with ``--debug`` (or ``MMSEG_DEBUG=1``), to
stderr too. Unexpected exceptions (bugs) also end with one line, plus a
second one saying where the traceback is.

Configs are read with :func:`load_config`, which turns a missing file, a
syntax error (file and line) and a ``--cfg-options`` key that matches
nothing into :class:`ConfigError`.
"""
import argparse
import ast
import difflib
import inspect
import logging
import os
import os.path as osp
import re
import sys
import traceback
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from mmengine.config import Config

from .errors import SenFormerError

#: exit status for a bad command line or config (as argparse uses)
EXIT_USAGE = 2
#: exit status for every other failure
EXIT_FAILURE = 1

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


# The config of the running tool, to say which key holds a bad value.
_current_config: Optional[Config] = None


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (read by :func:`run`) to a tool's parser."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help='on error, print the full traceback instead of one line')


# ----------------------------------------------------------------------
# configs


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


def _syntax_message(error: SyntaxError) -> str:
    where = f'{error.filename}, line {error.lineno}'
    text = (error.text or '').strip()
    return f'syntax error in config {where}: {error.msg}' + (
        f': {text}' if text else '')


def _close(name: str, candidates, n: int = 5) -> List[str]:
    """The candidates most similar to ``name`` (always some, when any)."""
    candidates = sorted(set(map(str, candidates)))
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(name, candidates, n=n, cutoff=0)
    return found


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

    Raises:
        ConfigError: the file (or one of its ``_base_`` files) does not
            exist, has a syntax error (file and line) or fails to evaluate,
            or an override key matches nothing.
    """
    global _current_config
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}' + (
            ' (it is a folder)' if osp.isdir(path) else ''))
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:
        real = _find_syntax_error(osp.abspath(path)) or e
        raise ConfigError(_syntax_message(real)) from e
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
    _current_config = cfg
    return cfg


def _config_paths(node, match: Callable[[dict], bool],
                  prefix: str = '') -> Iterator[Tuple[str, dict]]:
    """``(dotted key, dict)`` of every dict in a config where ``match``."""
    if isinstance(node, dict):
        if match(node):
            yield prefix, node
        for key, value in node.items():
            yield from _config_paths(value, match,
                                     f'{prefix}.{key}' if prefix else key)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _config_paths(value, match, f'{prefix}.{i}')


def _where_in_config(match: Callable[[dict], bool],
                     leaf: Optional[str] = None) -> List[Tuple[str, dict]]:
    if _current_config is None:
        return []
    found = list(_config_paths(_current_config._cfg_dict.to_dict(), match))
    if leaf is not None:
        found = [(f'{path}.{leaf}' if path else leaf, node)
                 for path, node in found]
    return found


def _format_paths(paths: List[str], limit: int = 3) -> str:
    shown = ', '.join(paths[:limit])
    return shown + (f' and {len(paths) - limit} more'
                    if len(paths) > limit else '')


# ----------------------------------------------------------------------
# explaining exceptions


class Explanation(NamedTuple):
    """What to tell the user about an exception."""
    message: str
    exit_code: int
    expected: bool  # known bad input, not a bug


_WORKER_HEADER = re.compile(r'^Caught (\w+) in DataLoader worker process')
_EXCEPTION_LINE = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception|Warning|'
                             r'Interrupt|Exit)?: ')
# what gloo/NCCL say when a peer process died or hangs
_PEER_FAILURE_SIGNS = ('Connection closed by peer', 'Connection reset by peer',
                       'NCCL communicator was aborted', 'Watchdog caught '
                       'collective operation timeout')
_NOT_IN_REGISTRY = re.compile(
    r'^(?P<type>\S+) is not in the (?:(?P<scope>[\w.]+)::)?'
    r'(?P<name>[\w ]+?) registry')
_UNEXPECTED_ARG = re.compile(
    r"^(?P<cls>[\w.]+)\.__init__\(\) got an unexpected keyword argument "
    r"'(?P<arg>\w+)'")
_MISSING_ARGS = re.compile(
    r'^(?P<cls>[\w.]+)\.__init__\(\) missing \d+ required '
    r'(?:positional |keyword-only )?arguments?: (?P<args>.+)$')


def _message(exc: BaseException) -> str:
    """The exception's text, unwrapped from dataloader-worker reports."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and \
            isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    if _WORKER_HEADER.match(text):
        # "Caught X in DataLoader worker process N. Original Traceback ...
        # module.X: message": keep the original message
        lines = text.splitlines()
        for i in range(len(lines) - 1, 0, -1):
            if _EXCEPTION_LINE.match(lines[i]):
                original = [lines[i].split(': ', 1)[1]] + lines[i + 1:]
                return '\n'.join(original).strip()
    return text.strip()


def _registries():
    """Every registry of mmseg, mmengine and their relatives."""
    from mmengine.registry import Registry

    import mmseg.registry as ours
    found, todo = [], [
        r for r in vars(ours).values() if isinstance(r, Registry)
    ]
    while todo:
        registry = todo.pop()
        if any(registry is r for r in found):
            continue
        found.append(registry)
        if registry.parent is not None:
            todo.append(registry.parent)
        todo.extend(registry.children.values())
    return found


def _unknown_type(match: re.Match) -> str:
    name, registry_name = match.group('type'), match.group('name')
    candidates = set()
    for registry in _registries():
        if registry.name == registry_name:
            candidates.update(registry.module_dict)
    paths = [p for p, _ in _where_in_config(
        lambda d: d.get('type') == name, leaf='type')]
    where = f' (config key {_format_paths(paths)})' if paths else ''
    close = _close(name, candidates)
    return (f"unknown type '{name}'{where}: it is not in the "
            f'{registry_name} registry' +
            (f'; closest registered names: {", ".join(close)}'
             if close else ''))


def _class_arguments(type_name: str) -> List[str]:
    """Keyword arguments a registered class accepts, including those its
    ``**kwargs`` pass on to base classes."""
    for registry in _registries():
        obj = registry.module_dict.get(type_name)
        if obj is None:
            continue
        names = []
        for cls in getattr(obj, '__mro__', [obj]):
            init = vars(cls).get('__init__', obj if cls is obj else None)
            try:
                params = inspect.signature(init).parameters
            except (TypeError, ValueError):
                continue
            names += [p for p, v in params.items()
                      if p != 'self' and v.kind not in (v.VAR_POSITIONAL,
                                                        v.VAR_KEYWORD)]
        return names
    return []


def _unexpected_argument(match: re.Match) -> str:
    cls, arg = match.group('cls'), match.group('arg')
    found = _where_in_config(lambda d: arg in d, leaf=arg)
    message = f"{cls} has no argument '{arg}'"
    if found:
        message += f' (config key {_format_paths([p for p, _ in found])})'
        type_name = found[0][1].get('type')
        if isinstance(type_name, str):
            close = _close(arg, _class_arguments(type_name), 3)
            if close:
                message += f'; did you mean {", ".join(close)}?'
    return message


def _dataloader_failure(text: str) -> Optional[str]:
    if 'DataLoader worker' in text and ('exited unexpectedly' in text
                                        or 'killed by signal' in text):
        return (f'a dataloader worker died ({text.splitlines()[0]}); it '
                'may have run out of memory (fewer num_workers or a smaller '
                'batch help) or crashed in native code; with num_workers=0 '
                'the error shows up in the main process')
    if text.startswith('DataLoader timed out'):
        return (f'{text} waiting for a batch: a dataloader worker hangs; '
                'raise the dataloader timeout if loading is just slow')
    return None


def explain(exc: BaseException) -> Explanation:
    """One message (a line, or a line plus indented details) for ``exc``,
    the exit status, and whether it is known bad input."""
    # PyTorch reports a dead dataloader worker by raising from its SIGCHLD
    # handler wherever the main process is, so the error can arrive wrapped
    # by the code it interrupted (mmengine's config formatting turns it into
    # a SyntaxError, for one)
    cause = exc
    while cause is not None:
        if isinstance(cause, RuntimeError):
            message = _dataloader_failure(_message(cause))
            if message:
                return Explanation(message, EXIT_FAILURE, True)
        cause = cause.__cause__ or cause.__context__

    text = _message(exc)
    if isinstance(exc, ConfigError):
        return Explanation(text, EXIT_USAGE, True)
    if isinstance(exc, SyntaxError):
        return Explanation(_syntax_message(exc), EXIT_USAGE, True)
    if isinstance(exc, KeyError):
        match = _NOT_IN_REGISTRY.match(text)
        if match:
            return Explanation(_unknown_type(match), EXIT_USAGE, True)
    if isinstance(exc, TypeError):
        match = _UNEXPECTED_ARG.match(text)
        if match:
            return Explanation(_unexpected_argument(match), EXIT_USAGE, True)
        match = _MISSING_ARGS.match(text)
        if match:
            return Explanation(
                f'{match.group("cls")} needs the argument(s) '
                f'{match.group("args")}, which the config does not give',
                EXIT_USAGE, True)
    if isinstance(exc, SenFormerError):
        return Explanation(text, EXIT_FAILURE, True)
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return Explanation(f'{exc.strerror}: {exc.filename}', EXIT_FAILURE,
                           True)
    if isinstance(exc, FileNotFoundError):
        return Explanation(text, EXIT_FAILURE, True)
    if isinstance(exc, MemoryError) or type(exc).__name__ == \
            'OutOfMemoryError':
        return Explanation(
            f'out of memory: {text.splitlines()[0] if text else ""}; reduce '
            'the batch size or the crop size', EXIT_FAILURE, True)
    if isinstance(exc, RuntimeError):
        torch = sys.modules.get('torch')
        dist_error = getattr(getattr(torch, 'distributed', None), 'DistError',
                             None)
        if (dist_error is not None and isinstance(exc, dist_error)) or any(
                sign in text for sign in _PEER_FAILURE_SIGNS):
            # gloo prefixes its messages with its source location
            first = re.sub(r'^\[[^\]]*\] ', '',
                           text.splitlines()[0] if text else '')
            return Explanation(
                'distributed: another process failed or stopped answering '
                f'({first or type(exc).__name__}); the first error of the '
                'job is the one to look at', EXIT_FAILURE, True)
    first = text.splitlines()[0] if text else ''
    return Explanation(f'{type(exc).__name__}: {first}'.rstrip(': '),
                       EXIT_FAILURE, False)


# ----------------------------------------------------------------------
# running a tool


def _log_files() -> List[logging.FileHandler]:
    """File handlers of the current mmengine logger, if a run made one."""
    from mmengine.logging import MMLogger
    if not MMLogger._instance_dict:  # no logger yet: do not create one
        return []
    logger = MMLogger.get_current_instance()
    return [h for h in logger.handlers if isinstance(h, logging.FileHandler)]


def _write_to_log(handlers: List[logging.FileHandler], text: str) -> None:
    for handler in handlers:
        try:
            handler.acquire()
            handler.stream.write(text)
            handler.flush()
        except (OSError, ValueError):  # closed or full: nothing to do
            pass
        finally:
            handler.release()


def run(main: Callable[[Optional[List[str]]], object],
        argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)`` and turn exceptions into an exit status.

    Args:
        main: the tool's entry point; its return value is the exit status
            when it is an int, else 0.
        argv: command line without the program name (``sys.argv[1:]`` when
            None); ``--debug`` in it prints tracebacks.

    Returns:
        0 on success, :data:`EXIT_USAGE` for a bad config or command line,
        :data:`EXIT_FAILURE` otherwise. ``SystemExit`` (argparse errors,
        ``sys.exit`` in the tool) passes through.
    """
    global _current_config
    _current_config = None
    args = sys.argv[1:] if argv is None else argv
    debug = '--debug' in args or os.environ.get('MMSEG_DEBUG', '') not in (
        '', '0')
    try:
        result = main(argv)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as exc:
        explanation = explain(exc)
        details = traceback.format_exc()
        handlers = _log_files()
        _write_to_log(handlers, f'error: {explanation.message}\n{details}')
        if debug:
            sys.stderr.write(details)
        rank = os.environ.get('RANK')
        world = os.environ.get('WORLD_SIZE', '1')
        prefix = f'error (rank {rank}): ' if rank is not None and \
            world != '1' else 'error: '
        print(prefix + explanation.message, file=sys.stderr)
        if not explanation.expected and not debug:
            where = ', '.join(h.baseFilename for h in handlers)
            print(('the traceback is in ' + where + '; ' if where else '') +
                  'run again with --debug to see it here', file=sys.stderr)
        sys.stderr.flush()
        return explanation.exit_code
    finally:
        _current_config = None
    return result if isinstance(result, int) and \
        not isinstance(result, bool) else 0
