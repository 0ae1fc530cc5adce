"""Data checked before training, outputs that are never half-written, and
downloaded checkpoints verified before use, through the command-line
tools on generated data.
"""
import errno
import functools
import hashlib
import http.server
import os
import os.path as osp
import threading

import cv2
import pytest
import torch

from mmseg.engine import atomic_io
from toy_runs import (TEST, TOY_CONFIG, error_line, generate_toy,
                      load_tool, run_tool, snapshot, train, write_config)

pytestmark = pytest.mark.usefixtures('keep_torch_global_state')

CHECK_DATASET = load_tool('tools/misc/check_dataset.py')


@pytest.fixture
def data(tmp_path_factory):
    return generate_toy(str(tmp_path_factory.mktemp('toy') / 'data'),
                        num_train=4, num_val=2)


def _files(root, kind, split):
    folder = osp.join(root, kind, split)
    return [osp.join(folder, n) for n in sorted(os.listdir(folder))]


def _break_dataset(root):
    """Four different problems, in both splits; returns the culprits."""
    labels = _files(root, 'annotations', 'training')
    label = cv2.imread(labels[0], cv2.IMREAD_UNCHANGED)
    label[:2, :2] = 9  # 8 after reduce_zero_label; the toy has 5 classes
    label[-2:, -2:] = 200
    cv2.imwrite(labels[0], label)
    cv2.imwrite(labels[1],
                cv2.imread(labels[1], cv2.IMREAD_UNCHANGED)[:48, :40])
    val_image = _files(root, 'images', 'validation')[0]
    with open(val_image, 'r+b') as f:
        f.truncate(60)
    val_label = _files(root, 'annotations', 'validation')[1]
    with open(val_label, 'wb') as f:
        f.write(b'not a png')
    return labels[0], labels[1], val_image, val_label


def _data_root_options(root):
    return ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={root}'
        for split in ('train', 'val', 'test')
    ]


@pytest.mark.parametrize('workers', [0, 2])
def test_check_dataset_reports_every_problem(data, capsys, workers):
    bad_values, bad_size, bad_image, bad_label = _break_dataset(data)
    before = snapshot(data)
    code, err, out = run_tool(
        CHECK_DATASET, [TOY_CONFIG, '--workers', str(workers),
                        *_data_root_options(data)], capsys)
    assert snapshot(data) == before  # read only
    assert code == 1, err
    assert 'error: 4 problem(s) in the datasets of' in error_line(err)
    lines = out.splitlines()

    def line_naming(path):
        found = [line for line in lines if repr(path) in line]
        assert len(found) == 1, out
        return found[0]

    assert '8 (4 px), 199 (4 px) outside the classes (0..4)' in \
        line_naming(bad_values)
    assert 'reduce_zero_label=True' in line_naming(bad_values)
    assert '48x40' in line_naming(bad_size) and '64x64' in \
        line_naming(bad_size)
    assert 'corrupt' in line_naming(bad_image)
    assert 'corrupt or not an image' in line_naming(bad_label)
    # a histogram per split, with the toy's class names
    assert out.count('class histogram') == 2
    assert any(line.split()[:1] == ['background'] for line in lines)
    assert 'ignored pixels:' in out


def test_check_dataset_clean_data_passes_with_a_histogram(data, capsys):
    code, err, out = run_tool(
        CHECK_DATASET, [TOY_CONFIG, '--workers', '0', '--no-progress',
                        *_data_root_options(data)], capsys)
    assert code == 0, err
    assert 'no problems found' in out and out.count('no problems') == 3
    # 4 training label maps of 64x64: the counted pixels add up
    train_part = out.split('val:')[0]
    counted = sum(int(line.split()[1]) for line in train_part.splitlines()
                  if line.strip() and line.split()[0] in (
                      'background', 'square', 'disc', 'triangle', 'bar'))
    ignored = int(train_part.split('ignored pixels:')[1].split()[0])
    assert counted + ignored == 4 * 64 * 64


def test_train_check_data_stops_before_training(data, tmp_path, capsys):
    bad_values, bad_size, _, _ = _break_dataset(data)
    code, err, out = train(data, tmp_path, capsys, '--check-data',
                           '--check-data-workers', '0')
    assert code == 1
    line = error_line(err)
    assert '--check-data: 2 problem(s)' in line  # val is off in the test
    assert 'training was not started' in line
    assert repr(bad_values) in out and repr(bad_size) in out
    assert not osp.exists(tmp_path / 'work' / 'iter_1.pth')


# ----------------------------------------------------------------------
# tools/test.py outputs


@pytest.mark.parametrize('fail_on', ['png', 'json'])
def test_test_outputs_on_a_full_disk(data, tmp_path, capsys, toy_state,
                                     monkeypatch, fail_on):
    """The disk fills up while tools/test.py writes its outputs: one line
    names the file, every file written before is complete."""
    checkpoint = tmp_path / 'toy.pth'
    torch.save({'state_dict': toy_state}, str(checkpoint))
    out, show = tmp_path / 'out', tmp_path / 'show'
    real_commit = atomic_io.commit
    written = []

    def commit(tmp, filename):
        png_failure = fail_on == 'png' and len(written) == 2
        if png_failure or (fail_on == 'json' and filename.endswith('.json')):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_commit(tmp, filename)
        written.append(filename)

    monkeypatch.setattr(atomic_io, 'commit', commit)
    cfg = write_config(tmp_path, data)
    code, err, _ = run_tool(TEST, [
        cfg, str(checkpoint), '--work-dir', str(tmp_path / 'work'), '--out',
        str(out), '--show-dir', str(show)
    ], capsys)
    assert code == 1
    line = error_line(err)
    assert 'No space left on device' in line and 'disk full' in line
    if fail_on == 'png':
        assert len(written) == 2
        assert f'cannot write {out}' in line or f'cannot write {show}' in line
    else:
        assert len(written) == 4  # 2 label maps + 2 overlays
        assert f'cannot write {tmp_path / "work"}' in line and \
            '.json' in line
    for path in written:
        assert cv2.imread(path, cv2.IMREAD_UNCHANGED) is not None, path
    for folder in (out, show, tmp_path / 'work'):
        if folder.exists():
            leftovers = [n for _, _, names in os.walk(folder)
                         for n in names if n.endswith('.tmp')]
            assert not leftovers
    assert not list((tmp_path / 'work').glob('eval_*.json'))


# ----------------------------------------------------------------------
# downloaded checkpoints


class _Quiet(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / 'www'
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def _publish(folder, name, obj):
    """torch.save ``obj`` as ``name-<sha256[:8]>.pth`` (publish_model's
    naming); the file's name."""
    path = folder / 'staging.pth'
    torch.save(obj, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    final = folder / f'{name}-{digest}.pth'
    path.rename(final)
    return final.name


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    # torch.hub's directory follows TORCH_HOME unless set_dir() fixed it
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


@pytest.mark.parametrize('damage', ['swapped', 'garbage', 'not_tensors'])
def test_bad_download_is_removed_and_named(data, tmp_path, capsys,
                                           http_root, hub_dir, damage):
    folder, base = http_root
    name = _publish(folder, 'backbone', {'conv.weight': torch.ones(2, 2)})
    if damage == 'swapped':  # another file under the published name
        torch.save({'conv.weight': torch.zeros(2, 2)}, str(folder / name))
    elif damage == 'garbage':  # e.g. a proxy's error page
        name = 'backbone.pth'
        (folder / name).write_bytes(b'<html>502 Bad Gateway</html>')
    else:
        name = 'backbone.pth'
        torch.save({'state_dict': {'conv.weight': [1, 2]}},
                   str(folder / name))
    url = f'{base}/{name}'
    code, err, out = train(data, tmp_path, capsys, '--cfg-options',
                           f'model.pretrained={url}')
    assert code == 1
    cached = hub_dir / name
    line = error_line(err)
    assert f'checkpoint {cached} (downloaded from {url}) is bad' in line
    assert 'removed it from the cache' in line
    assert {'swapped': 'sha256', 'garbage': 'not a loadable checkpoint',
            'not_tensors': 'not a state dict of tensors'}[damage] in line
    assert not cached.exists()
    assert not [n for n in os.listdir(hub_dir) if n.endswith('.part')]


def test_good_download_is_kept_and_a_bad_cached_copy_replaced(
        http_root, hub_dir, capsys):
    from mmseg.engine.pretrained_weights import ensure_pretrained
    folder, base = http_root
    name = _publish(folder, 'backbone', {'conv.weight': torch.ones(2, 2)})
    url = f'{base}/{name}'
    hub_dir.mkdir(parents=True)
    (hub_dir / name).write_bytes(b'half a file')  # an old broken download
    assert ensure_pretrained(dict(pretrained=url)) == str(hub_dir / name)
    assert 'in the cache is bad' in capsys.readouterr().out
    assert (hub_dir / name).read_bytes() == (folder / name).read_bytes()


def test_verify_checkpoint_file_size_and_expected_keys(tmp_path):
    from mmseg.engine.download_check import (BadDownloadError,
                                             verify_checkpoint_file)
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': {'a': torch.ones(1)}}, str(path))
    size = path.stat().st_size
    verify_checkpoint_file(str(path), size=size, expected_keys=['a'])
    with pytest.raises(BadDownloadError, match=r"1 missing \(e.g. \['b'\]"):
        verify_checkpoint_file(str(path), expected_keys=['a', 'b'])
    assert not path.exists()
    torch.save({'state_dict': {'a': torch.ones(1)}}, str(path))
    with pytest.raises(BadDownloadError, match='incomplete download'):
        verify_checkpoint_file(str(path), size=size + 1, remove=False)
    assert path.exists()
