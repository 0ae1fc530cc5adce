"""Weights-only checkpoint loading and strict ``load_checkpoint`` reports."""
import functools
import http.server
import os
import pickle
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint

from mmseg.engine import (CheckpointError, CheckpointMismatchError,
                          NotACheckpointError, UnsafeCheckpointError,
                          atomic_save, load_checkpoint, read_checkpoint,
                          safe_torch_load, summarise_keys)


class TinyHead(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(4, 4, 1)
        self.conv_seg = nn.Conv2d(4, num_classes, 1)


class TinySegmentor(nn.Module):
    """backbone (conv + BN) and a head whose classifier depends on K."""

    def __init__(self, num_classes=3, stages=1):
        super().__init__()
        self.backbone = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(3 if i == 0 else 4, 4, 3),
                          nn.BatchNorm2d(4)) for i in range(stages)
        ])
        self.decode_head = TinyHead(num_classes)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa)


class _Evil:
    """Unpickling it would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class _EvalEvil(_Evil):

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')", )


class _GetattrEvil:
    """Reaches beyond HistoryBuffer's statistics through ``getattr``."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, 'register_statistics')


# --- safe loading ---------------------------------------------------------


@pytest.mark.parametrize('protocol_2_raw', [False, True])
def test_code_running_pickle_is_refused(tmp_path, protocol_2_raw):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    payload = {'state_dict': {}, 'meta': _Evil(marker)}
    if protocol_2_raw:  # a plain pickle, not torch's zip layout
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    for load in (safe_torch_load, CheckpointLoader.load_checkpoint,
                 functools.partial(load_checkpoint, TinySegmentor())):
        with pytest.raises(UnsafeCheckpointError) as info:
            load(str(path))
        message = str(info.value)
        assert str(path) in message and 'posix.system' in message
        assert '\n' not in message
    assert not marker.exists()


def test_non_allowlisted_builtin_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _EvalEvil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match='builtins.eval'):
        safe_torch_load(str(path))
    assert not marker.exists()


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrEvil()}, path)
    with pytest.raises(UnsafeCheckpointError, match='register_statistics'):
        safe_torch_load(str(path))
    # the statistics methods themselves load (message_hub needs them)
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    torch.save({'hub': buffer}, tmp_path / 'hub.pth')
    assert safe_torch_load(str(tmp_path / 'hub.pth'))['hub'].mean() == 2.0


def _numpy1_legacy_checkpoint(obj, path):
    """Write ``obj`` as numpy 1.x + old torch did: the legacy (non-zip)
    layout, numpy globals under ``numpy.core``."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes().replace(b'numpy._core.multiarray',
                                     b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in data
    path.write_bytes(data)


def test_published_format_loads_strictly(tmp_path):
    source = TinySegmentor()
    state = OrderedDict(
        ('module.' + k, v) for k, v in source.state_dict().items())
    meta = dict(
        mmseg_version='0.20.2',
        config="model = dict(type='EncoderDecoder')\n",
        CLASSES=('sky', 'tree', 'road'),
        PALETTE=[[0, 0, 255], [0, 255, 0], [255, 0, 0]],
        hook_msgs=dict(best_score=np.float64(0.4567), last_ckpt='x.pth'),
        eta=np.array([1.5, 2.5], dtype=np.float32),
        dataset_meta=ConfigDict(classes=('sky', ), label_map=dict(a=1)))
    path = tmp_path / 'published.pth'
    _numpy1_legacy_checkpoint(dict(state_dict=state, meta=meta), path)

    model = TinySegmentor()
    loaded = load_checkpoint(model, str(path))
    assert _same_weights(model, source)
    assert loaded['meta']['CLASSES'] == ('sky', 'tree', 'road')
    assert loaded['meta']['hook_msgs']['best_score'] == np.float64(0.4567)
    assert loaded['meta']['dataset_meta'].label_map == dict(a=1)
    # mmengine's own entry point takes the same weights-only route
    other = TinySegmentor()
    mmengine_load_checkpoint(other, str(path))
    assert _same_weights(other, source)


def test_read_checkpoint_returns_any_layout(tmp_path):
    torch.save({'model': {'w': torch.ones(1)}}, tmp_path / 'swin.pth')
    assert read_checkpoint(str(tmp_path / 'swin.pth'))['model']['w'] == 1
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        read_checkpoint(str(tmp_path / 'missing.pth'))


def test_bare_state_dict_loads(tmp_path):
    source = TinySegmentor()
    torch.save(source.state_dict(), tmp_path / 'bare.pth')
    model = TinySegmentor()
    load_checkpoint(model, str(tmp_path / 'bare.pth'))
    assert _same_weights(model, source)


def test_http_checkpoint_loads_and_unsafe_is_refused(tmp_path, monkeypatch):
    served = tmp_path / 'served'
    served.mkdir()
    source = TinySegmentor()
    torch.save(dict(state_dict=source.state_dict(),
                    meta=dict(best=np.float64(1.0))), served / 'good.pth')
    marker = tmp_path / 'pwned'
    torch.save({'x': _Evil(marker)}, served / 'evil.pth')
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))

    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        model = TinySegmentor()
        load_checkpoint(model, f'{base}/good.pth')
        assert _same_weights(model, source)
        with pytest.raises(UnsafeCheckpointError) as info:
            CheckpointLoader.load_checkpoint(f'{base}/evil.pth')
        assert f'{base}/evil.pth' in str(info.value)
        assert 'posix.system' in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()


# --- bad files ------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / 'nowhere' / 'model.pth')
    with pytest.raises(FileNotFoundError, match='nowhere/model.pth'):
        load_checkpoint(TinySegmentor(), path)


@pytest.mark.parametrize('kind', ['garbage', 'truncated', 'empty', 'text'])
def test_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / f'{kind}.pth'
    if kind == 'garbage':
        path.write_bytes(np.random.RandomState(0).bytes(2048))
    elif kind == 'truncated':
        torch.save(TinySegmentor().state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == 'empty':
        path.write_bytes(b'')
    else:
        path.write_text('model = dict(type="EncoderDecoder")\n')
    with pytest.raises(NotACheckpointError) as info:
        load_checkpoint(TinySegmentor(), str(path))
    message = str(info.value)
    assert message.startswith(f'{path} is not a checkpoint')
    assert '\n' not in message


def test_pickle_of_something_else_is_not_a_model_checkpoint(tmp_path):
    torch.save([1, 2, 3], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='holds a list'):
        load_checkpoint(TinySegmentor(), str(tmp_path / 'list.pth'))
    torch.save({'epoch': 3}, tmp_path / 'meta.pth')
    with pytest.raises(CheckpointError, match=r'found keys \[epoch\]'):
        load_checkpoint(TinySegmentor(), str(tmp_path / 'meta.pth'))


# --- mismatch reports -----------------------------------------------------


def test_other_architecture_gives_a_short_grouped_report(tmp_path):
    big = TinySegmentor(stages=40)  # 40 stages: many keys, few groups
    state = big.state_dict()
    state['auxiliary_head.conv.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=state), tmp_path / 'other.pth')
    model = TinySegmentor(stages=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, str(tmp_path / 'other.pth'))
    message = str(info.value)
    lines = message.splitlines()
    extra_stage_keys = 39 * 6  # conv w/b, bn w/b/mean/var (+ counter)
    assert lines[0] == (
        f'checkpoint {tmp_path / "other.pth"} does not match the model '
        f'(strict loading): {extra_stage_keys + 39 + 1} unexpected keys')
    assert lines[1] == ('  unexpected keys (in the checkpoint, not in the '
                        'model): 274 (backbone.*: 273, '
                        'auxiliary_head.conv.weight)')
    assert len(lines) == 2 and len(message) < 600
    assert 'classifier' not in message
    # a refused strict load leaves the model untouched
    assert all(torch.equal(before[k], v)
               for k, v in model.state_dict().items())


def test_missing_and_shape_mismatch_report(tmp_path):
    source = TinySegmentor()
    state = source.state_dict()
    del state['decode_head.conv.weight'], state['decode_head.conv.bias']
    state['backbone.0.0.weight'] = torch.zeros(4, 3, 5, 5)
    torch.save(dict(state_dict=state), tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(TinySegmentor(), str(tmp_path / 'partial.pth'))
    lines = str(info.value).splitlines()
    assert lines[0].endswith('missing 2 keys, 1 shape mismatches')
    assert lines[1].endswith(
        '2 (decode_head.conv.weight, decode_head.conv.bias)')
    assert 'backbone.0.0.weight: checkpoint (4, 3, 5, 5) vs model ' \
        '(4, 3, 3, 3)' in lines[2]


def test_other_number_of_classes_explains_fine_tuning(tmp_path):
    source = TinySegmentor(num_classes=5)
    torch.save(dict(state_dict=source.state_dict()), tmp_path / 'k5.pth')
    model = TinySegmentor(num_classes=3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, str(tmp_path / 'k5.pth'))
    message = str(info.value)
    assert '2 shape mismatches' in message.splitlines()[0]
    assert 'decode_head.conv_seg.weight: checkpoint (5, 4, 1, 1) vs model ' \
        '(3, 4, 1, 1)' in message
    assert 'only the classifier layers differ' in message
    assert 'the checkpoint has 5 classes, the model 3' in message
    assert 'load_from=' in message and 'strict=False' in message

    # the advised non-strict load takes everything but the classifier
    classifier = model.decode_head.conv_seg.weight.clone()
    load_checkpoint(model, str(tmp_path / 'k5.pth'), strict=False)
    assert torch.equal(model.backbone[0][0].weight,
                       source.backbone[0][0].weight)
    assert torch.equal(model.decode_head.conv_seg.weight, classifier)


def test_summarise_keys():
    assert summarise_keys(['a.b', 'c']) == 'a.b, c'
    keys = [f'backbone.stages.{s}.blocks.{b}.w' for s in range(4)
            for b in range(10)] + [f'decode_head.l{i}.w' for i in range(3)]
    assert summarise_keys(keys) == (
        'backbone.stages.0.blocks.*: 10, backbone.stages.1.blocks.*: 10, '
        'backbone.stages.2.blocks.*: 10, backbone.stages.3.blocks.*: 10, '
        'decode_head.*: 3')
    assert summarise_keys(keys, max_groups=2) == (
        'backbone.stages.*: 40, decode_head.*: 3')
    many = [f'm{i}.w' for i in range(20)] + ['big.a', 'big.b']
    assert summarise_keys(many, max_groups=3) == \
        'm0.w, m1.w, big.*: 2, ... (18 more)'


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / 'ckpt.pth'
    atomic_save({'a': torch.ones(2)}, str(path))
    atomic_save({'a': torch.zeros(2)}, str(path))
    assert torch.equal(safe_torch_load(str(path))['a'], torch.zeros(2))
    assert os.listdir(tmp_path) == ['ckpt.pth']

    class Unpicklable:

        def __reduce__(self):
            raise TypeError('cannot pickle')

    with pytest.raises(TypeError):
        atomic_save({'a': Unpicklable()}, str(path))
    assert torch.equal(safe_torch_load(str(path))['a'], torch.zeros(2))
    assert os.listdir(tmp_path) == ['ckpt.pth']
