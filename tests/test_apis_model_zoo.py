"""The model index (senformer_configs/model_index.yml) and fetching
checkpoints by name (mmseg/apis/model_zoo.py, tools/model_zoo.py): a local
HTTP server on 127.0.0.1 and a folder stand in for archive.org, serving a
toy checkpoint under a test-only index."""
import contextlib
import functools
import hashlib
import http.server
import importlib.util
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import REPO_ROOT, SHARED
from mmseg import cli
from mmseg.apis import model_zoo

TOY = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')
SEED_README = osp.join(SHARED, 'seed', '000_dad4209418cc910c.txt')


def load_tool(relpath):
    spec = importlib.util.spec_from_file_location(
        'tool_' + relpath.replace('/', '_')[:-3], osp.join(REPO_ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODEL_ZOO = load_tool('tools/model_zoo.py')
TEST = load_tool('tools/test.py')


def run_tool(tool, argv, capsys):
    code = cli.run(tool.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith('error')]
    assert len(lines) == 1 and 'Traceback' not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------
# the repository's index


def _readme_rows():
    """The README's model-zoo table, by config path."""
    with open(osp.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        rows = [line for line in f if line.startswith('| ')
                and '](senformer_configs/' in line]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip('|').split('|')]
        config = re.search(r'\((senformer_configs/[^)]+)\)', cells[7])[1]
        table[osp.join(REPO_ROOT, config)] = cells
    return table


def test_index_lists_every_published_checkpoint_as_the_readme():
    models = model_zoo.load_index()
    table = _readme_rows()
    assert len(models) == len(table) == 30
    assert sorted(m.config for m in models.values()) == sorted(table)
    for name, model in models.items():
        assert osp.isfile(model.config), model.config
        assert model.filename == name + '.pth'
        assert model.url == ('https://archive.org/download/senformer_weights/'
                             + model.filename)
        dataset, _, sharing, miou, miou_ms, params, crop, _ = \
            table[model.config]
        assert model.dataset == dataset and crop in name, name
        assert name.startswith('senformer_' if sharing == 'yes'
                               else 'senformerNWS_')
        assert model.miou == float(miou)
        assert model.miou_ms == (None if miou_ms == '-' else float(miou_ms))
        total, without_aux = (float(p) for p in params.split('/'))
        assert round(model.params / 1e6, 1) == total, name
        assert round(model.params_without_aux / 1e6, 1) == without_aux, name


@pytest.mark.parametrize('name', ['senformer_r50_512x512_ade20k',
                                  'senformerNWS_swin_tiny_512x512_ade20k'])
def test_index_parameter_counts_are_those_of_the_built_models(name):
    model = model_zoo.get_model(name)
    built = model_zoo._model_on_meta(model.config)
    total = sum(p.numel() for p in built.parameters())
    aux = sum(p.numel() for p in built.auxiliary_head.parameters())
    assert (total, total - aux) == (model.params, model.params_without_aux)


def test_index_matches_the_links_of_the_published_readme():
    if not osp.isfile(SEED_README):
        pytest.skip(f'published README not found at {SEED_README}')
    with open(SEED_README, encoding='utf-8') as f:
        text = f.read()
    links = re.findall(
        r'<tr>.*?href="(https://archive\.org/download/senformer_weights/'
        r'senformer[^"]*\.pth)".*?href="(senformer_configs/[^"]+)"',
        text, re.S)
    published = {osp.basename(url)[:-4]: (url, config)
                 for url, config in links}
    ours = {name: (m.url, osp.relpath(m.config, REPO_ROOT))
            for name, m in model_zoo.load_index().items()}
    assert ours == published


# ----------------------------------------------------------------------
# a toy zoo served from 127.0.0.1 and from a folder


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; counts GETs; ``truncated_*`` files announce their
    full length but stop half-way, as a dropped connection does."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        name = self.path.lstrip('/')
        if not name.startswith(('truncated_', 'stalling_')):
            return super().do_GET()
        with open(osp.join(self.directory, name), 'rb') as f:
            data = f.read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        if name.startswith('stalling_'):  # until the client is stopped
            self.server.stop.wait(60)
        self.close_connection = True


@contextlib.contextmanager
def serve(folder):
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_Handler, directory=folder))
    server.requests = []
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


def _entry(name, filename, config=TOY, sha256=None):
    return (f'  - Name: {name}\n    Config: {config}\n'
            f'    Weights: https://example.invalid/zoo/{filename}\n'
            f'    Sha256: {repr(sha256) if sha256 else "null"}\n'
            '    Metadata: {Dataset: toy}\n'
            '    Results: {mIoU: 1.0, mIoU(ms+flip): null}\n')


@pytest.fixture(scope='module')
def toy_zoo(tmp_path_factory):
    """A mirror folder with a good toy checkpoint and broken ones, and an
    index naming them."""
    from mmseg.apis import init_model
    root = tmp_path_factory.mktemp('zoo')
    mirror = root / 'mirror'
    mirror.mkdir()
    model = init_model(TOY)
    state = model.state_dict()
    torch.save(dict(state_dict=state, meta=dict(
        dataset_meta=model.dataset_meta)), mirror / 'toy.pth')
    good = (mirror / 'toy.pth').read_bytes()
    digest = hashlib.sha256(good).hexdigest()
    (mirror / 'toy_sha.pth').write_bytes(good)
    (mirror / 'toy_bad_sha.pth').write_bytes(good)
    (mirror / 'truncated_toy.pth').write_bytes(good)
    # never completed, so any bytes do; small, so that its first half
    # arrives at once however busy the machine is (the client gives up a
    # stalled read after 30 s)
    (mirror / 'stalling_toy.pth').write_bytes(good[:2 << 20])
    (mirror / 'corrupt.pth').write_bytes(os.urandom(4096))
    # another architecture: a deeper stem and no auxiliary head
    other = {k: v for k, v in state.items()
             if not k.startswith('auxiliary_head')}
    other['backbone.stem.0.weight'] = torch.zeros(64, 3, 3, 3)
    torch.save(other, mirror / 'other_arch.pth')
    index = root / 'index.yml'
    index.write_text('Models:\n' + ''.join([
        _entry('toy', 'toy.pth'),
        _entry('toy_sha', 'toy_sha.pth', sha256=digest),
        _entry('toy_bad_sha', 'toy_bad_sha.pth', sha256='0' * 64),
        _entry('toy_truncated', 'truncated_toy.pth'),
        _entry('toy_stalling', 'stalling_toy.pth'),
        _entry('toy_corrupt', 'corrupt.pth'),
        _entry('toy_other_arch', 'other_arch.pth'),
    ]))
    return dict(root=root, mirror=str(mirror), index=str(index),
                digest=digest, state=state)


@pytest.fixture
def zoo_env(toy_zoo, tmp_path, monkeypatch):
    """The toy index and an empty cache through the environment."""
    cache = tmp_path / 'cache'
    monkeypatch.setenv(model_zoo.ENV_INDEX, toy_zoo['index'])
    monkeypatch.setenv(model_zoo.ENV_CACHE, str(cache))
    monkeypatch.delenv(model_zoo.ENV_MIRROR, raising=False)
    return dict(toy_zoo, cache=cache)


def _cache_listing(cache):
    return sorted(os.listdir(cache)) if osp.isdir(cache) else []


@pytest.mark.slow
def test_download_from_a_local_server_once_then_reused(zoo_env, capsys,
                                                       monkeypatch):
    from mmseg.apis import init_model
    with serve(zoo_env['mirror']) as server:
        mirror = f'http://127.0.0.1:{server.server_address[1]}/'
        code, err, out = run_tool(
            MODEL_ZOO, ['download', 'toy', '--mirror', mirror], capsys)
        assert code == 0, err
        cached = zoo_env['cache'] / 'toy.pth'
        assert f'toy: {cached} sha256 {zoo_env["digest"]}' in out
        assert '100%' in err  # the progress bar
        assert 'not recorded in the index yet' in err
        assert _cache_listing(zoo_env['cache']) == ['toy.pth']
        # reused: by the API, by name in init_model, by the CLI
        assert model_zoo.fetch_checkpoint('toy', mirror=mirror) == \
            str(cached)
        monkeypatch.setenv(model_zoo.ENV_MIRROR, mirror)
        model = init_model('toy', device='cpu')
        assert server.requests == ['/toy.pth']
    key = 'decode_head.learners.0.queries'
    assert torch.equal(model.state_dict()[key], zoo_env['state'][key])
    code, _, out = run_tool(MODEL_ZOO, ['list'], capsys)
    assert code == 0 and re.search(r'^toy\s+toy .* yes$', out, re.M), out
    code, _, out = run_tool(MODEL_ZOO, ['verify'], capsys)
    assert code == 0 and f'toy: OK {cached}' in out


@pytest.mark.slow
def test_download_from_a_mirror_folder_checks_the_recorded_sha256(
        zoo_env, capsys, monkeypatch):
    monkeypatch.setenv(model_zoo.ENV_MIRROR, zoo_env['mirror'])
    path = model_zoo.fetch_checkpoint('toy_sha', progress=False)
    assert path == str(zoo_env['cache'] / 'toy_sha.pth')
    assert 'not recorded' not in capsys.readouterr().err
    # a cached file that went bad is reported, and kept
    with open(path, 'r+b') as f:
        f.seek(1000)
        f.write(b'\0' * 64)
    code, err, out = run_tool(MODEL_ZOO, ['verify', 'toy_sha'], capsys)
    assert code == 1
    assert 'toy_sha: FAILED' in out and 'is not the published' in out
    assert osp.isfile(path)


@pytest.mark.parametrize('name, culprit', [
    ('toy_truncated', 'download incomplete'),
    ('toy_corrupt', 'is not a checkpoint'),
    ('toy_other_arch', 'is not a checkpoint of its config'),
    ('toy_bad_sha', 'is not the published ' + '0' * 64),
])
@pytest.mark.parametrize('source', ['http', 'folder'])
def test_a_bad_download_ends_in_one_line_and_leaves_the_cache_clean(
        zoo_env, capsys, name, culprit, source):
    if source == 'folder' and name == 'toy_truncated':
        pytest.skip('a folder cannot drop a connection')
    with contextlib.ExitStack() as stack:
        if source == 'http':
            server = stack.enter_context(serve(zoo_env['mirror']))
            mirror = f'http://127.0.0.1:{server.server_address[1]}'
        else:
            mirror = zoo_env['mirror']
        code, err, _ = run_tool(
            MODEL_ZOO, ['download', name, '--mirror', mirror], capsys)
    assert code == 1
    line = error_line(err)
    assert culprit in line and name in line, line
    assert _cache_listing(zoo_env['cache']) == []


def test_an_unknown_name_suggests_close_ones(zoo_env, capsys, monkeypatch):
    code, err, _ = run_tool(MODEL_ZOO, ['download', 'toy_sah'], capsys)
    assert code == 2
    line = error_line(err)
    assert "unknown model 'toy_sah'" in line and 'did you mean toy_sha' in line
    # the same through tools/test.py, with the published index
    monkeypatch.delenv(model_zoo.ENV_INDEX)
    code, err, _ = run_tool(TEST, ['senformer_r50_512x512_ade2k'], capsys)
    assert code == 2
    assert 'did you mean senformer_r50_512x512_ade20k' in error_line(err)
    assert _cache_listing(zoo_env['cache']) == []


def test_a_missing_mirror_file_names_it(zoo_env, capsys, tmp_path):
    code, err, _ = run_tool(
        MODEL_ZOO, ['download', 'toy', '--mirror', tmp_path], capsys)
    assert code == 1
    assert f'the mirror folder {tmp_path} has no toy.pth' in error_line(err)
    # an unreachable server: nothing cached, the mirror variable suggested
    code, err, _ = run_tool(MODEL_ZOO, ['download', 'toy', '--mirror',
                                        'http://127.0.0.1:9/'], capsys)
    assert code == 1
    assert 'could not download toy from http://127.0.0.1:9/toy.pth' in \
        error_line(err)
    assert _cache_listing(zoo_env['cache']) == []


def test_model_names_and_paths_are_told_apart(tmp_path, monkeypatch):
    assert model_zoo.looks_like_model_name('senformer_r50_512x512_ade20k')
    assert not model_zoo.looks_like_model_name('configs/x.py')
    assert not model_zoo.looks_like_model_name('x.py')
    existing = tmp_path / 'senformer_local'
    existing.write_text('')
    monkeypatch.chdir(tmp_path)
    assert not model_zoo.looks_like_model_name('senformer_local')


def test_other_local_ranks_wait_for_rank_0(zoo_env, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '1')
    target = zoo_env['cache'] / 'toy.pth'
    zoo_env['cache'].mkdir()
    timer = threading.Timer(1.0, target.write_bytes, args=(b'rank 0',))
    timer.start()
    try:
        assert model_zoo.fetch_checkpoint('toy', mirror='http://127.0.0.1:9'
                                          ) == str(target)
    finally:
        timer.cancel()
    assert target.read_bytes() == b'rank 0'  # waited, fetched nothing


@pytest.mark.slow
@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_download_leaves_no_complete_looking_file(
        zoo_env, stop):
    cache = zoo_env['cache']
    with serve(zoo_env['mirror']) as server:
        mirror = f'http://127.0.0.1:{server.server_address[1]}'
        # a shell running the suite in the background ignores SIGINT, and
        # children inherit that: give the tool the default disposition
        proc = subprocess.Popen(
            [sys.executable, 'tools/model_zoo.py', 'download', 'toy_stalling',
             '--mirror', mirror], cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.time() + 120
            while not any(osp.getsize(cache / n) for n in
                          _cache_listing(cache)):  # half the file is in
                assert proc.poll() is None and time.time() < deadline, \
                    proc.communicate()
                time.sleep(0.2)
            proc.send_signal(stop)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert 'stalling_toy.pth' not in _cache_listing(cache)
    if stop == signal.SIGINT:  # a clean stop also removes its partial file
        assert proc.returncode == 130 and 'interrupted' in err, err
        assert _cache_listing(cache) == []
    else:  # what a kill leaves is a temporary file, never the checkpoint
        assert all(n.endswith('.part') for n in _cache_listing(cache))
