"""init_model / inference_model, and checkpoint round trips of a real
SenFormer."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from mmseg.apis import inference_model, init_model
from mmseg.engine import CheckpointMismatchError
from mmseg.structures import SegDataSample
from tests.conftest import REPO_ROOT

TOY = osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return init_model(TOY)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    path = str(tmp_path_factory.mktemp('img') / 'img.jpg')
    cv2.imwrite(path, img)
    return path, cv2.imread(path)


def test_init_model_is_in_eval_mode_without_pretraining(model):
    assert not model.training
    assert model.cfg.model.pretrained is None
    assert model.dataset_meta['classes'][0] == 'background'
    assert not any(
        type(m).__name__ == 'SyncBatchNorm' for m in model.modules())


def test_inference_on_path_array_and_list(model, image):
    path, array = image
    from_path = inference_model(model, path)
    assert isinstance(from_path, SegDataSample)
    assert from_path.pred_sem_seg.data.shape == (1, 90, 130)
    assert from_path.seg_logits.data.shape == (model.num_classes, 90, 130)
    from_array = inference_model(model, array)
    torch.testing.assert_close(from_array.seg_logits.data,
                               from_path.seg_logits.data)
    both = inference_model(model, [path, array])
    assert isinstance(both, list) and len(both) == 2


def test_aug_test_averages_softmaxes_at_original_size(model, image):
    path, _ = image
    result = inference_model(model, path, aug_test=True)
    probs = result.seg_logits.data
    assert probs.shape == (model.num_classes, 90, 130)
    torch.testing.assert_close(
        probs.sum(dim=0), torch.ones(90, 130), rtol=1e-4, atol=1e-4)
    assert torch.equal(result.pred_sem_seg.data[0], probs.argmax(dim=0))


def test_missing_image_is_named(model, tmp_path):
    missing = str(tmp_path / 'nope.jpg')
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        inference_model(model, missing)


def test_checkpoint_round_trip_strict(model, image, tmp_path):
    path, _ = image
    ckpt = str(tmp_path / 'published.pth')
    # the published 0.x layout: state_dict + meta with CLASSES/PALETTE
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(CLASSES=('a', 'b', 'c', 'd', 'e'), PALETTE=None)),
        ckpt)
    loaded = init_model(TOY, ckpt)
    assert loaded.dataset_meta['classes'] == ('a', 'b', 'c', 'd', 'e')
    torch.testing.assert_close(
        inference_model(loaded, path).seg_logits.data,
        inference_model(model, path).seg_logits.data)


def test_mismatched_checkpoint_is_reported(model, tmp_path):
    state = model.state_dict()
    state.pop('decode_head.learners.0.queries')
    state['neck.extra.weight'] = torch.zeros(1)
    ckpt = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=state), ckpt)
    with pytest.raises(CheckpointMismatchError) as info:
        init_model(TOY, ckpt)
    message = str(info.value)
    assert 'decode_head.learners.0.queries' in message
    assert 'neck.extra.weight' in message
