"""Loading model weights with a readable report of what does not match.

Three layouts are read: the published 0.x files and mmengine's
(``{'state_dict': ..., 'meta': ..., ...}``) and a bare state dict. Files are
opened through mmengine's ``CheckpointLoader``, i.e. with the weights-only
loaders of :mod:`mmseg.engine.safe_load` for local paths and URLs.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader

from .atomic_io import atomic_write
from .safe_load import CheckpointError, install_safe_loading

# Parameters whose shape follows the number of classes: the 1x1 classifier
# of every decode head and the class queries of SenFormer's learners.
_CLASS_DEPENDENT = re.compile(r'(^|\.)(conv_seg|queries)(\.|$)')


class CheckpointMismatchError(CheckpointError):
    """A strict load found missing, unexpected or differently shaped keys."""


def summarise_keys(keys: Sequence[str], max_groups: int = 6) -> str:
    """Describe many keys briefly by grouping them on a common prefix.

    The deepest prefix depth that yields at most ``max_groups`` groups is
    used, so a whole other architecture reads like
    ``backbone.stages.*: 380, decode_head.*: 32``.

    Args:
        keys: state dict keys, in model order.
        max_groups: how many names/groups to show at most.

    Returns:
        A comma separated list of keys or ``prefix.*: count`` groups.
    """
    keys = list(keys)
    if len(keys) <= max_groups:
        return ', '.join(keys)

    def split(members: List[str], depth: int) -> Dict[str, List[str]]:
        groups: Dict[str, List[str]] = {}
        for key in members:
            parts = key.split('.')
            name = key if len(parts) <= depth else \
                '.'.join(parts[:depth]) + '.*'
            groups.setdefault(name, []).append(key)
        return groups

    # (depth, members) per group name; refine the biggest groups one level
    # at a time while the total stays within max_groups
    groups = {name: (1, members) for name, members in split(keys, 1).items()}
    refined = True
    while refined:
        refined = False
        for name, (depth, members) in sorted(
                groups.items(), key=lambda item: -len(item[1][1])):
            if not name.endswith('.*'):
                continue
            parts = split(members, depth + 1)
            if len(groups) - 1 + len(parts) <= max_groups:
                del groups[name]
                groups.update((n, (depth + 1, m)) for n, m in parts.items())
                refined = True
                break
    order = {key: i for i, key in enumerate(keys)}
    shown = sorted(groups.items(), key=lambda item: -len(item[1][1]))
    shown = sorted(shown[:max_groups], key=lambda item: order[item[1][1][0]])
    text = ', '.join(members[0] if len(members) == 1 else
                     f'{name}: {len(members)}'
                     for name, (_, members) in shown)
    left = len(keys) - sum(len(members) for _, (_, members) in shown)
    if left:
        text += f', ... ({left} more)'
    return text


class StateDictReport:
    """How a checkpoint's state dict differs from a model's.

    Args:
        model_state: the model's ``state_dict()``.
        checkpoint_state: the (key-revised) state dict of the checkpoint.
        class_counts: the model's numbers of classes (``num_classes`` of
            its heads), to recognise classifier layers by shape.
    """

    def __init__(self, model_state: Mapping[str, torch.Tensor],
                 checkpoint_state: Mapping[str, object],
                 class_counts: Iterable[int] = ()):
        # counters that BN recreates itself; a checkpoint without them loads
        self.missing = [
            k for k in model_state if k not in checkpoint_state
            and not k.endswith('num_batches_tracked')
        ]
        self.unexpected = [k for k in checkpoint_state if k not in model_state]
        self.mismatched: List[Tuple[str, tuple, tuple]] = []
        for key, value in checkpoint_state.items():
            if key in model_state and isinstance(value, torch.Tensor) and \
                    value.shape != model_state[key].shape:
                self.mismatched.append(
                    (key, tuple(value.shape), tuple(model_state[key].shape)))
        self._class_counts = set(class_counts)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def _class_dependent(self, ckpt_shape: tuple, model_shape: tuple,
                         key: str) -> bool:
        if _CLASS_DEPENDENT.search(key):
            return True
        if len(ckpt_shape) != len(model_shape):
            return False
        diff = [i for i, (a, b) in enumerate(zip(ckpt_shape, model_shape))
                if a != b]
        return len(diff) == 1 and model_shape[diff[0]] in self._class_counts

    @property
    def only_classifier(self) -> bool:
        """Whether only class-dependent layers (another K) differ."""
        return (not self.missing and not self.unexpected
                and bool(self.mismatched)
                and all(self._class_dependent(c, m, k)
                        for k, c, m in self.mismatched))

    def summary(self) -> str:
        """``missing N keys, M unexpected keys, S shape mismatches``."""
        parts = []
        if self.missing:
            parts.append(f'missing {len(self.missing)} keys')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected keys')
        if self.mismatched:
            parts.append(f'{len(self.mismatched)} shape mismatches')
        return ', '.join(parts)

    def format(self, filename: str, strict: bool) -> str:
        """The report: a summary line, then one line per kind of problem."""
        how = 'strict loading' if strict else 'loaded non-strictly'
        lines = [f'checkpoint {filename} does not match the model ({how}): '
                 f'{self.summary()}']
        if self.missing:
            lines.append(f'  missing keys (in the model, not in the '
                         f'checkpoint): {len(self.missing)} '
                         f'({summarise_keys(self.missing)})')
        if self.unexpected:
            lines.append(f'  unexpected keys (in the checkpoint, not in the '
                         f'model): {len(self.unexpected)} '
                         f'({summarise_keys(self.unexpected)})')
        if self.mismatched:
            shown = [f'{k}: checkpoint {tuple(c)} vs model {tuple(m)}'
                     for k, c, m in self.mismatched[:4]]
            if len(self.mismatched) > 4:
                rest = [k for k, _, _ in self.mismatched[4:]]
                shown.append(f'... ({summarise_keys(rest)})')
            lines.append(f'  shape mismatches: {len(self.mismatched)} '
                         f'({"; ".join(shown)})')
        if self.only_classifier:
            key, ckpt_shape, model_shape = self.mismatched[0]
            counts = [(a, b) for a, b in zip(ckpt_shape, model_shape)
                      if a != b]
            classes = (f' (the checkpoint has {counts[0][0]} classes, the '
                       f'model {counts[0][1]})') if counts else ''
            lines.append(
                '  only the classifier layers differ, the checkpoint was '
                f'trained for another number of classes{classes}. To '
                'fine-tune from it, load the other weights non-strictly: '
                f"set load_from='{filename}' in the config (the Runner "
                'loads non-strictly and skips these layers) or call '
                'load_checkpoint(model, file, strict=False).')
        return '\n'.join(lines)


def read_checkpoint(filename: str, map_location='cpu', logger=None):
    """Unpickle a checkpoint file or URL, weights-only.

    Args:
        filename: local path or ``http(s)://`` URL (or any other scheme
            mmengine's ``CheckpointLoader`` knows).
        map_location: as for :func:`torch.load`.
        logger: logger for the loading message; mmengine's current one if
            None.

    Returns:
        Whatever the file holds (usually a dict).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, or it needs non-allowlisted
            globals (see :mod:`mmseg.engine.safe_load`).
    """
    install_safe_loading()
    return CheckpointLoader.load_checkpoint(filename, map_location,
                                            logger or 'current')


def get_state_dict(checkpoint: object, filename: str) -> Dict[str, object]:
    """The model weights in a loaded checkpoint of any supported layout.

    Args:
        checkpoint: what was unpickled.
        filename: the file, for messages.

    Returns:
        The state dict (``checkpoint['state_dict']`` or ``checkpoint``).
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f'{filename} is not a model checkpoint: it holds a '
            f'{type(checkpoint).__name__}, not a dict')
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, Mapping) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        keys = ', '.join(map(str, list(checkpoint)[:8]))
        raise CheckpointError(
            f'{filename} is not a model checkpoint: expected a state dict of '
            f"tensors (bare or under 'state_dict'), found keys [{keys}]")
    return state_dict


def _revise(state_dict: Mapping[str, object],
            revise_keys: Sequence[Tuple[str, str]]) -> OrderedDict:
    """Apply the key substitutions to the weights and their metadata."""
    metadata = getattr(state_dict, '_metadata', None)
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict(
            (re.sub(pattern, replacement, k), v)
            for k, v in state_dict.items())
        if metadata is not None:
            metadata = OrderedDict((re.sub(pattern, replacement, k), v)
                                   for k, v in metadata.items())
    state_dict = OrderedDict(state_dict)
    if metadata is not None:
        # BN reads the per-module versions to fill in counters of old files
        state_dict._metadata = metadata
    return state_dict


def load_state_dict_checked(model: nn.Module,
                            checkpoint: object,
                            filename: str,
                            strict: bool = True,
                            logger=None,
                            revise_keys: Sequence[Tuple[str, str]] = (
                                (r'^module\.', ''), )) -> None:
    """Copy a loaded checkpoint's weights into ``model``, with a report.

    Args:
        model: the model (a wrapper such as DDP is unwrapped).
        checkpoint: what :func:`read_checkpoint` returned.
        filename: the checkpoint's path or URL, for messages.
        strict: raise :class:`CheckpointMismatchError` (leaving the model
            untouched) unless keys and shapes match exactly. When False,
            loads every matching tensor and logs the report as a warning.
        logger: logger for the messages; mmengine's current one if None.
        revise_keys: ``(pattern, replacement)`` regex substitutions applied
            to the checkpoint's keys (by default strips a DDP ``module.``).
    """
    state_dict = _revise(get_state_dict(checkpoint, filename), revise_keys)
    if is_model_wrapper(model):
        model = model.module

    class_counts = [
        m.num_classes for m in model.modules()
        if isinstance(getattr(m, 'num_classes', None), int)
    ]
    report = StateDictReport(model.state_dict(), state_dict, class_counts)
    if report and strict:
        raise CheckpointMismatchError(report.format(filename, strict=True))
    if report:
        print_log(report.format(filename, strict=False),
                  logger=logger or 'current',
                  level=logging.WARNING)
        mismatched = {k for k, _, _ in report.mismatched}
        metadata = getattr(state_dict, '_metadata', None)
        state_dict = OrderedDict(
            (k, v) for k, v in state_dict.items() if k not in mismatched)
        if metadata is not None:
            state_dict._metadata = metadata
    model.load_state_dict(state_dict, strict=False)


def load_checkpoint(model: nn.Module,
                    filename: str,
                    map_location='cpu',
                    strict: bool = True,
                    logger=None,
                    revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.',
                                                              ''), )):
    """Load weights into ``model``, strictly by default.

    Args:
        model: the model (a wrapper such as DDP is unwrapped).
        filename: local path or URL of the checkpoint.
        map_location: as for :func:`torch.load`.
        strict: raise :class:`CheckpointMismatchError` unless keys and
            shapes match exactly. When False, loads every matching tensor
            and logs the report as a warning.
        logger: logger for the messages; mmengine's current one if None.
        revise_keys: ``(pattern, replacement)`` regex substitutions applied
            to the checkpoint's keys (by default strips a DDP ``module.``).

    Returns:
        The whole loaded checkpoint (e.g. to read its ``meta``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, unsafe, or (strict) mismatched.
    """
    checkpoint = read_checkpoint(filename, map_location, logger)
    load_state_dict_checked(model, checkpoint, filename, strict, logger,
                            revise_keys)
    return checkpoint


def atomic_save(obj: object, filename: str) -> None:
    """``torch.save`` that never leaves a half-written ``filename``.

    Writes a temporary file beside the target, flushes it to disk and
    renames it over ``filename`` (atomic on POSIX), so a crash or a full
    disk keeps the previous file intact (see :mod:`mmseg.engine.atomic_io`).

    Raises:
        SaveError: writing failed (e.g. disk full); ``filename`` unchanged.
    """
    atomic_write(filename, lambda f: torch.save(obj, f))
