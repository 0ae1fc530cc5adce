"""The published checkpoints by name: their index, download, cache and
verification.

``senformer_configs/model_index.yml`` lists every published checkpoint
under the file stem of its published link (``senformer_r50_512x512_ade20k``)
with its config, URL, published results and parameter counts. A name given
to :func:`mmseg.apis.init_model`, ``tools/test.py`` or
``demo/image_demo.py`` resolves to that config and to a local copy of the
checkpoint, which :func:`fetch_checkpoint` downloads once:

* into the cache folder (``$SENFORMER_CACHE``, default
  ``<torch hub dir>/checkpoints``, where mmengine and ``load_from`` URLs
  cache the same files, so a checkpoint fetched either way is reused);
* from ``$SENFORMER_MIRROR`` (or a ``mirror`` argument) when set: a base URL
  or a local folder holding the same file names, for clusters without
  internet access; otherwise from the published URL;
* through a hidden temporary file, renamed to its final name only once it is
  complete and verified: the sha256 of the index when recorded, and a strict
  load into the config's model (all keys, all shapes). A short, corrupt or
  mismatched download ends with one line and leaves nothing in the cache.

``$SENFORMER_MODEL_INDEX`` (or an ``index`` argument) replaces the index by
another file of the same form, e.g. for checkpoints of one's own.
"""
import difflib
import os
import os.path as osp
import re
import sys
import time
import urllib.error
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

from mmseg.cli import ConfigError
from mmseg.engine.atomic_io import commit, temporary_name
from mmseg.engine.download_check import sha256_of
from mmseg.engine.safe_load import CheckpointError

ENV_INDEX = 'SENFORMER_MODEL_INDEX'
ENV_MIRROR = 'SENFORMER_MIRROR'
ENV_CACHE = 'SENFORMER_CACHE'

#: seconds the other local ranks wait for rank 0's download
DISTRIBUTED_WAIT_S = 3 * 3600

DEFAULT_INDEX = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'senformer_configs', 'model_index.yml')


class UnknownModelError(ConfigError):
    """A model name that the index does not list."""


class ModelZooError(CheckpointError):
    """The index is unreadable, or a checkpoint could not be fetched or is
    not the one the index describes."""


@dataclass(frozen=True)
class PublishedModel:
    """One entry of the model index."""
    name: str
    config: str  # absolute path
    url: str
    sha256: Optional[str]
    dataset: str
    miou: Optional[float]
    miou_ms: Optional[float]
    params: Optional[int]
    params_without_aux: Optional[int]
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def filename(self) -> str:
        """The checkpoint's file name (the last part of its URL)."""
        return osp.basename(urlparse(self.url).path)


def index_path(index: Optional[str] = None) -> str:
    """The index file in use: ``index``, else ``$SENFORMER_MODEL_INDEX``,
    else the repository's ``senformer_configs/model_index.yml``."""
    return index or os.environ.get(ENV_INDEX) or DEFAULT_INDEX


def _entry(raw: object, where: str, folder: str) -> PublishedModel:
    if not isinstance(raw, dict):
        raise ModelZooError(f'{where}: expected a mapping, got {raw!r}')
    missing = [k for k in ('Name', 'Config', 'Weights') if not raw.get(k)]
    if missing:
        raise ModelZooError(f'{where}: no {", ".join(missing)}')
    metadata = raw.get('Metadata') or {}
    results = raw.get('Results') or {}
    sha256 = raw.get('Sha256')
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(
            r'[0-9a-fA-F]{64}', sha256)):
        raise ModelZooError(
            f'{where}: Sha256 must be 64 hex digits in quotes, or null; got '
            f'{sha256!r}')
    return PublishedModel(
        name=str(raw['Name']),
        config=osp.normpath(osp.join(folder, str(raw['Config']))),
        url=str(raw['Weights']),
        sha256=sha256.lower() if sha256 else None,
        dataset=str(metadata.get('Dataset', '')),
        miou=results.get('mIoU'),
        miou_ms=results.get('mIoU(ms+flip)'),
        params=metadata.get('Parameters'),
        params_without_aux=metadata.get('Parameters without auxiliary head'),
        metadata=dict(metadata))


def load_index(index: Optional[str] = None) -> Dict[str, PublishedModel]:
    """The models of the index file, by name, in file order.

    Raises:
        ModelZooError: the file is missing or malformed (naming the entry).
    """
    import yaml
    path = index_path(index)
    if not osp.isfile(path):
        raise ModelZooError(f'model index not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ModelZooError(f'model index {path} is not valid YAML: '
                            f'{str(e).splitlines()[0]}') from None
    if not isinstance(data, dict) or not isinstance(data.get('Models'), list):
        raise ModelZooError(f'model index {path} has no list "Models"')
    folder = osp.dirname(osp.abspath(path))
    models: Dict[str, PublishedModel] = {}
    files: Dict[str, str] = {}
    for i, raw in enumerate(data['Models']):
        model = _entry(raw, f'model index {path}, entry {i}', folder)
        if model.name in models:
            raise ModelZooError(
                f'model index {path} lists {model.name} twice')
        if model.filename in files:  # they would share one cached file
            raise ModelZooError(
                f'model index {path}: {files[model.filename]} and '
                f'{model.name} both have the file {model.filename}')
        files[model.filename] = model.name
        models[model.name] = model
    return models


def looks_like_model_name(text: str) -> bool:
    """Whether a config argument is meant as a model name: not an existing
    path, no folder, no ``.py`` and no URL."""
    return (isinstance(text, str) and bool(text) and not osp.exists(text)
            and '/' not in text and os.sep not in text
            and not text.endswith('.py'))


def get_model(name: str, index: Optional[str] = None) -> PublishedModel:
    """The index entry ``name``.

    Raises:
        UnknownModelError: no such name; the closest names are suggested.
    """
    models = load_index(index)
    if name in models:
        return models[name]
    close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.6)
    hint = (f'did you mean {", ".join(close)}?' if close else
            'tools/model_zoo.py list shows them')
    raise UnknownModelError(
        f'unknown model {name!r}: no such file, and not in the model index '
        f'{_shown(index_path(index))} ({hint})')


def cache_dir(directory: Optional[str] = None) -> str:
    """Where checkpoints are kept: ``directory``, else ``$SENFORMER_CACHE``,
    else ``<torch hub dir>/checkpoints``."""
    if directory or os.environ.get(ENV_CACHE):
        return osp.abspath(osp.expanduser(directory
                                          or os.environ[ENV_CACHE]))
    import torch
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def cached_checkpoint(model: PublishedModel,
                      directory: Optional[str] = None) -> str:
    """The path the checkpoint has (or will have) in the cache."""
    return osp.join(cache_dir(directory), model.filename)


def source_of(model: PublishedModel, mirror: Optional[str] = None) -> str:
    """Where to fetch the checkpoint: the mirror's copy (``mirror`` or
    ``$SENFORMER_MIRROR``: a base URL, or a folder, given as a ``file://``
    URL) or else the published URL."""
    mirror = mirror or os.environ.get(ENV_MIRROR)
    if not mirror:
        return model.url
    if '://' in mirror:
        return mirror.rstrip('/') + '/' + model.filename
    path = osp.join(osp.expanduser(mirror), model.filename)
    if not osp.isdir(osp.expanduser(mirror)):
        raise ModelZooError(f'mirror folder not found: {mirror}')
    if not osp.isfile(path):
        raise ModelZooError(
            f'{model.name}: the mirror folder {mirror} has no '
            f'{model.filename}')
    return Path(path).resolve().as_uri()


def _shown(path: str) -> str:
    """``path`` relative to the current directory when inside it."""
    relative = osp.relpath(path)
    return path if relative.startswith('..') else relative


def _model_on_meta(config: str):
    """The config's model with shapes but no storage (fast even for
    Swin-L): enough to check a state dict's keys and shapes."""
    import torch
    from mmengine.registry import init_default_scope

    from mmseg.registry import MODELS
    from mmseg.cli import attach_config_to_errors, load_config
    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.pretrained = None
    cfg.model.backbone.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'), attach_config_to_errors(cfg):
        return MODELS.build(cfg.model)


def verify_checkpoint(model: PublishedModel,
                      path: str,
                      label: Optional[str] = None) -> str:
    """Check a checkpoint file against its index entry.

    Args:
        model: the entry.
        path: the file.
        label: how to call the file in messages (default: ``path``).

    Returns:
        The file's sha256.

    Raises:
        ModelZooError: another sha256 than the recorded one, not a
            checkpoint (truncated, corrupt, unsafe) or not the config's
            architecture (keys or shapes differ).
    """
    from mmseg.engine.checkpoint import (StateDictReport, get_state_dict,
                                         read_checkpoint)
    label = label or path
    digest = sha256_of(path)
    if model.sha256 and digest != model.sha256:
        raise ModelZooError(
            f'{model.name}: sha256 {digest} of {label} is not the published '
            f'{model.sha256}')
    try:
        state_dict = get_state_dict(
            read_checkpoint(path, map_location='cpu', logger='silent'), label)
    except CheckpointError as e:
        message = str(e).splitlines()[0].replace(path, label)
        raise ModelZooError(f'{model.name}: {message}') from None
    # keys as load_checkpoint revises them (a DDP wrapper's prefix)
    state_dict = {re.sub(r'^module\.', '', k): v
                  for k, v in state_dict.items()}
    report = StateDictReport(
        _model_on_meta(model.config).state_dict(), state_dict)
    if report:
        raise ModelZooError(
            f'{model.name}: {label} is not a checkpoint of its config '
            f'{_shown(model.config)}: {report.summary()}')
    return digest


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fetch_checkpoint(name: str,
                     mirror: Optional[str] = None,
                     directory: Optional[str] = None,
                     index: Optional[str] = None,
                     progress: bool = True) -> str:
    """The local path of a published checkpoint, downloaded and verified
    (see the module's description) unless already in the cache.

    Args:
        name: its name in the index.
        mirror: base URL or folder replacing the published location
            (default ``$SENFORMER_MIRROR``).
        directory: cache folder (default :func:`cache_dir`).
        index: index file (default :func:`index_path`).
        progress: show a progress bar while downloading.

    Raises:
        UnknownModelError: ``name`` is not in the index.
        ModelZooError: the download failed or the file is not the
            checkpoint; the cache is left as it was.
    """
    model = get_model(name, index)
    target = cached_checkpoint(model, directory)
    if osp.isfile(target):
        return target
    if os.environ.get('LOCAL_RANK', '0') != '0':
        return _wait_for(target, name)
    source = source_of(model, mirror)
    # hidden and suffixed (atomic_io's pattern): never taken for the file
    staging = temporary_name(target, uuid.uuid4().hex[:8])
    _say(f'downloading {name} from {source} to {target}')
    try:
        try:
            from mmseg.engine.download import download_file
            download_file(source, staging, progress=progress,
                          label=model.filename)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', None) or e
            offline = '' if mirror or os.environ.get(ENV_MIRROR) else (
                f'; without internet access set {ENV_MIRROR} to a folder '
                f'or URL holding {model.filename}')
            raise ModelZooError(
                f'could not download {name} from {source}: {reason}; '
                f'nothing was cached{offline}') from None
        digest = verify_checkpoint(model, staging, label=source)
        commit(staging, target)
    finally:
        if osp.exists(staging):
            os.remove(staging)
    if model.sha256 is None:
        _say(f'{name}: sha256 {digest} (not recorded in the index yet)')
    return target


def _wait_for(target: str, name: str) -> str:
    """The other processes of a distributed run on this machine wait for
    local rank 0's download instead of fetching the file again (if rank 0
    fails, the launcher stops them)."""
    _say(f'waiting for local rank 0 to download {name} to {target}')
    waited = 0.0
    while not osp.isfile(target):
        if waited > DISTRIBUTED_WAIT_S:
            raise ModelZooError(
                f'{name}: {target} did not appear within '
                f'{DISTRIBUTED_WAIT_S} s (local rank 0 downloads it)')
        time.sleep(0.5)
        waited += 0.5
    return target


def resolve_model(config_or_name: str,
                  checkpoint: Optional[str] = None,
                  mirror: Optional[str] = None,
                  index: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """``(config, checkpoint)`` for a config path or a model name.

    A config path comes back as it is, with ``checkpoint``. A model name
    gives its config and, unless ``checkpoint`` is given, its cached
    (downloaded if needed) checkpoint.
    """
    if not looks_like_model_name(config_or_name):
        return config_or_name, checkpoint
    model = get_model(config_or_name, index)
    if checkpoint is None:
        checkpoint = fetch_checkpoint(model.name, mirror=mirror, index=index)
    return model.config, checkpoint


def cached_models(directory: Optional[str] = None,
                  index: Optional[str] = None) -> List[PublishedModel]:
    """The models of the index whose checkpoint is in the cache."""
    return [
        m for m in load_index(index).values()
        if osp.isfile(cached_checkpoint(m, directory))
    ]
