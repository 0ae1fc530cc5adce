"""Inference on folders (mmseg/apis/inferencer.py, demo/image_demo.py):
the label maps equal those of ``tools/test.py --out``, whatever the inputs'
form and the batch size; a toy checkpoint is served by name from a mirror
folder through a test-only model index."""
import glob
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT, run_cli
from mmseg.apis import model_zoo

TOY = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')
NUM_LEARNERS = 4  # the toy head: 2 blocks x 2 heads



@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """Three 64x64 validation images, a config reading them, and a
    checkpoint with random weights large enough to predict several classes,
    published under the name ``toy_small`` in a mirror folder."""
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'misc'))
    try:
        from generate_toy_dataset import generate
    finally:
        sys.path.pop(0)
    from mmseg.apis import init_model
    root = tmp_path_factory.mktemp('infer')
    generate(str(root / 'data'), num_train=1, num_val=3, size=64, seed=0)
    config = root / 'small.py'
    config.write_text(
        f'_base_ = [{TOY!r}]\n'
        f'data_root = {str(root / "data")!r}\n'
        'val_dataloader = dict(num_workers=0, persistent_workers=False,\n'
        '                      dataset=dict(data_root=data_root))\n'
        'test_dataloader = val_dataloader\n')
    model = init_model(str(config))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            fan_in = max(1, param[0].numel()) if param.dim() > 1 else 1
            scale = 1.0 if param.dim() > 1 else 0.2
            param.copy_(torch.randn(param.shape, generator=generator) *
                        scale / fan_in**0.5)
    mirror = root / 'mirror'
    mirror.mkdir()
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=model.dataset_meta)),
               mirror / 'toy_small.pth')
    index = root / 'index.yml'
    index.write_text(
        'Models:\n  - Name: toy_small\n'
        f'    Config: {config}\n'
        '    Weights: https://example.invalid/zoo/toy_small.pth\n')
    images = sorted(glob.glob(str(root / 'data' / 'images' / 'validation' /
                                  '*.jpg')))
    return dict(root=root, config=str(config), mirror=str(mirror),
                index=str(index), images=images,
                checkpoint=str(mirror / 'toy_small.pth'))


def read_label(path):
    return np.array(Image.open(path))


@pytest.mark.slow
def test_image_demo_on_a_folder_writes_what_test_writes(toy, tmp_path):
    env = {model_zoo.ENV_INDEX: toy['index'],
           model_zoo.ENV_MIRROR: toy['mirror'],
           model_zoo.ENV_CACHE: str(tmp_path / 'cache')}
    # batches of 2 in both: a batched forward pass may round differently
    # from one image at a time, and flip a near-tie pixel
    run_cli(sys.executable, 'tools/test.py', 'toy_small', '--out',
            tmp_path / 'test_out', '--work-dir', tmp_path / 'work',
            '--cfg-options', 'test_dataloader.batch_size=2', env=env)
    folder = osp.dirname(toy['images'][0])
    proc = run_cli(sys.executable, 'demo/image_demo.py', folder, 'toy_small',
                   '--out-dir', tmp_path / 'demo', '--batch-size', '2',
                   '--learners', env=env)
    assert 'downloading' not in proc.stderr  # the cached file is reused
    assert os.listdir(tmp_path / 'cache') == ['toy_small.pth']
    assert f'wrote 3 label maps to {tmp_path / "demo" / "pred"}' in \
        proc.stdout
    assert '3/3' in proc.stderr  # the progress bar

    stems = [osp.splitext(osp.basename(p))[0] for p in toy['images']]
    expected = sorted(os.listdir(tmp_path / 'test_out'))
    assert expected == [s + '.png' for s in stems]
    assert sorted(os.listdir(tmp_path / 'demo' / 'pred')) == expected
    values = set()
    for name in expected:
        ours = read_label(tmp_path / 'demo' / 'pred' / name)
        theirs = read_label(tmp_path / 'test_out' / name)
        assert ours.shape == (64, 64) and ours.dtype == np.uint8
        assert np.array_equal(ours, theirs), name
        values |= set(np.unique(ours).tolist())
        overlay = cv2.imread(str(tmp_path / 'demo' / 'vis' / name))
        assert overlay.shape == (64, 64, 3)
    assert len(values) > 1, values  # a comparison of more than one class
    for i in range(NUM_LEARNERS):
        for kind in ('pred', 'vis'):
            assert sorted(os.listdir(
                tmp_path / 'demo' / f'learner{i}' / kind)) == expected
    assert sorted(os.listdir(tmp_path / 'demo')) == \
        ['learner0', 'learner1', 'learner2', 'learner3', 'pred', 'vis']


@pytest.fixture(scope='module')
def inferencer(toy):
    from mmseg.apis import Inferencer
    return Inferencer(toy['config'], toy['checkpoint'], device='cpu')


def test_every_input_form_and_batch_size_gives_the_same_maps(
        toy, inferencer, tmp_path):
    images = toy['images']
    # another size, so that a batch cannot hold every image
    wide = tmp_path / 'wide' / 'wide.png'
    wide.parent.mkdir()
    cv2.imwrite(str(wide), cv2.resize(cv2.imread(images[0]), (90, 70)))
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# two images\n{images[1]}\n\n{wide}\n')
    array = cv2.imread(images[2])
    one_by_one = inferencer([images[0], images[1], str(wide), images[2]],
                            batch_size=1, progress=False)
    forms = [osp.join(osp.dirname(images[0]), '*_00000.jpg'), str(listing),
             array]
    mixed = inferencer(forms, batch_size=1, out_dir=str(tmp_path / 'out'),
                       write_vis=False, progress=False)
    assert [r['stem'] for r in mixed] == \
        ['toy_validation_00000', 'toy_validation_00001', 'wide', 'image3']
    for ours, reference in zip(mixed, one_by_one):
        assert np.array_equal(ours['pred_sem_seg'],
                              reference['pred_sem_seg'])

    # batches only take images of one size, in input order
    batch_sizes = []
    predict = inferencer._predict

    def recording(batch):
        batch_sizes.append(len(batch))
        return predict(batch)

    inferencer._predict = recording
    try:
        batched = inferencer(forms, batch_size=3, progress=False)
    finally:
        del inferencer._predict
    assert batch_sizes == [2, 1, 1]
    for ours, reference in zip(batched, one_by_one):
        # the same up to rounding (a near tie may flip)
        assert (ours['pred_sem_seg'] == reference['pred_sem_seg']).mean() \
            > 0.99
    assert mixed[2]['pred_sem_seg'].shape == (70, 90)
    written = read_label(mixed[2]['pred_file'])
    # the toy dataset reduces zero labels: files hold class index + 1
    assert np.array_equal(written, mixed[2]['pred_sem_seg'] + 1)
    assert not osp.exists(tmp_path / 'out' / 'vis')


def test_aug_test_is_inference_models(toy, tmp_path):
    from mmseg.apis import Inferencer, inference_model
    tta = Inferencer(toy['config'], toy['checkpoint'], aug_test=True)
    (result, ) = tta(toy['images'][0], progress=False)
    reference = inference_model(tta.model, toy['images'][0], aug_test=True)
    assert np.array_equal(result['pred_sem_seg'],
                          reference.pred_sem_seg.data[0].numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_gives_the_cpu_maps(toy, inferencer):
    from mmseg.apis import Inferencer
    gpu = Inferencer(toy['config'], toy['checkpoint'], device='cuda')
    for ours, reference in zip(
            gpu(toy['images'], batch_size=2, progress=False),
            inferencer(toy['images'], batch_size=2, progress=False)):
        same = (ours['pred_sem_seg'] == reference['pred_sem_seg']).mean()
        assert same > 0.999, same


def test_bad_inputs_name_the_culprit(toy, inferencer, tmp_path):
    from mmseg.apis.inferencer import InferenceInputError
    cases = [
        (str(tmp_path / 'nope.jpg'), 'input not found: '),
        (str(tmp_path), 'no image'),
        (str(tmp_path / '*.png'), 'no image matches'),
    ]
    listing = tmp_path / 'list.txt'
    listing.write_text(f'{toy["images"][0]}\nmissing.jpg\n')
    cases.append((str(listing), f'{listing}, line 2: image not found'))
    for inputs, message in cases:
        with pytest.raises(InferenceInputError, match=message):
            inferencer(inputs, progress=False)
    twin = tmp_path / 'twin'
    twin.mkdir()
    same_stem = str(twin / (osp.basename(toy['images'][0])[:-4] + '.png'))
    cv2.imwrite(same_stem, cv2.imread(toy['images'][0]))
    with pytest.raises(InferenceInputError, match='would both be written'):
        inferencer([toy['images'][0], same_stem], progress=False)


def test_image_demo_bad_input_is_one_line(toy, tmp_path, capsys):
    import importlib.util

    from mmseg import cli
    spec = importlib.util.spec_from_file_location(
        'image_demo', osp.join(REPO_ROOT, 'demo', 'image_demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for args, culprit in [
        ([tmp_path / 'none', toy['config'], toy['checkpoint']],
         f'input not found: {tmp_path / "none"}'),
        ([osp.dirname(toy['images'][0]), toy['config'], toy['checkpoint']],
         'give --out-dir'),
        ([toy['images'][0], toy['config']], 'needs a CHECKPOINT'),
    ]:
        assert cli.run(demo.main, [str(a) for a in args]) != 0
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ') and \
            culprit in lines[0], err
