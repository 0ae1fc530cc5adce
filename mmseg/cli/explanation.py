"""What to tell the user about the exception that ended a tool.

:func:`explain` maps an exception to one message, an exit status and
whether it is known bad input (a missing file, a broken dataset, a wrong
config key, an unusable checkpoint, a full disk, a dead dataloader worker)
or a bug.

An unknown ``type`` or an unexpected argument is named by its config key
(``model.backbone.dpeth``) when the config it was built from is known. That
config is passed explicitly: as ``explain``'s argument, or attached to the
exception by the code that was building from it::

    cfg = load_config(args.config, args.cfg_options)
    with attach_config_to_errors(cfg):
        runner = SegRunner.from_cfg(cfg)   # a KeyError here carries cfg

No module state is involved: each exception carries its own config.
"""
import contextlib
import difflib
import inspect
import re
import sys
from typing import (Callable, Iterator, List, Mapping, NamedTuple, Optional,
                    Tuple, Union)

from mmengine.config import Config

from mmseg.utils.errors import SenFormerError
from .config_loading import ConfigError, syntax_message

#: exit status for a bad command line or config (as argparse uses)
EXIT_USAGE = 2
#: exit status for every other failure
EXIT_FAILURE = 1

#: a config as tools and library code hold it
ConfigLike = Optional[Union[Config, Mapping]]

# the attribute an exception carries its config in
_CONFIG_ATTRIBUTE = '_mmseg_config'


@contextlib.contextmanager
def attach_config_to_errors(config: ConfigLike) -> Iterator[ConfigLike]:
    """Attach ``config`` to any exception raised inside the block (unless
    an inner block attached one first), for :func:`explain` to name the
    config key at fault. Yields ``config``; the exception is re-raised
    unchanged otherwise."""
    try:
        yield config
    except Exception as exc:
        if config is not None and config_attached_to(exc) is None:
            try:
                setattr(exc, _CONFIG_ATTRIBUTE, config)
            except (AttributeError, TypeError):  # a type without __dict__
                pass
        raise


def config_attached_to(exc: BaseException) -> ConfigLike:
    """The config :func:`attach_config_to_errors` attached to ``exc`` or to
    an exception it was raised from, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        config = getattr(exc, _CONFIG_ATTRIBUTE, None)
        if config is not None:
            return config
        exc = exc.__cause__ or exc.__context__
    return None


def _close(name: str, candidates, n: int = 5) -> List[str]:
    """The candidates most similar to ``name`` (always some, when any)."""
    candidates = sorted(set(map(str, candidates)))
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(name, candidates, n=n, cutoff=0)
    return found


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


def _where_in_config(config: ConfigLike, match: Callable[[dict], bool],
                     leaf: Optional[str] = None) -> List[Tuple[str, dict]]:
    """``(dotted key, dict)`` of the dicts of ``config`` where ``match``,
    the key extended by ``leaf``; none without a config."""
    if config is None:
        return []
    tree = config._cfg_dict.to_dict() if isinstance(config, Config) else \
        config
    found = list(_config_paths(tree, match))
    if leaf is not None:
        found = [(f'{path}.{leaf}' if path else leaf, node)
                 for path, node in found]
    return found


def _format_paths(paths: List[str], limit: int = 3) -> str:
    shown = ', '.join(paths[:limit])
    return shown + (f' and {len(paths) - limit} more'
                    if len(paths) > limit else '')


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


def _unknown_type(match: re.Match, config: ConfigLike) -> str:
    name, registry_name = match.group('type'), match.group('name')
    candidates = set()
    for registry in _registries():
        if registry.name == registry_name:
            candidates.update(registry.module_dict)
    paths = [p for p, _ in _where_in_config(
        config, lambda d: d.get('type') == name, leaf='type')]
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


def _unexpected_argument(match: re.Match, config: ConfigLike) -> str:
    cls, arg = match.group('cls'), match.group('arg')
    found = _where_in_config(config, lambda d: arg in d, leaf=arg)
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


def explain(exc: BaseException,
            config: ConfigLike = None) -> Explanation:
    """One message (a line, or a line plus indented details) for ``exc``,
    the exit status, and whether it is known bad input.

    Args:
        exc: the exception that ended the tool.
        config: the config the failing code was building from (a
            ``Config`` or a plain dict), so that an unknown ``type`` or
            argument is named by its config key; by default the one
            :func:`attach_config_to_errors` attached to ``exc``.
    """
    if config is None:
        config = config_attached_to(exc)
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
        return Explanation(syntax_message(exc), EXIT_USAGE, True)
    if isinstance(exc, KeyError):
        match = _NOT_IN_REGISTRY.match(text)
        if match:
            return Explanation(_unknown_type(match, config), EXIT_USAGE,
                                   True)
    if isinstance(exc, TypeError):
        match = _UNEXPECTED_ARG.match(text)
        if match:
            return Explanation(_unexpected_argument(match, config),
                               EXIT_USAGE, True)
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
