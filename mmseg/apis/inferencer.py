"""Segmenting many images at once: folders, globs, lists of paths.

:class:`Inferencer` is this code's ``MMSegInferencer``: built from a config
(or a published model's name) and a checkpoint, called on inputs, it
segments them in batches and writes, under ``out_dir``::

    pred/<stem>.png               label map, original image size
    vis/<stem>.png                colour overlay on the image
    learner<i>/pred/<stem>.png    with learners=True: learner i's label map
    learner<i>/vis/<stem>.png     ... and its overlay

``pred/`` holds one file per image and nothing else, so it can be compared
with (or used in place of) the ``--out`` folder of ``tools/test.py``: the
label maps are written exactly as there, i.e. in the dataset's annotation
encoding (class index + 1 when the test dataset uses ``reduce_zero_label``,
as ADE20K's annotations do; the class index otherwise).
"""
import copy
import glob
import inspect
import os
import os.path as osp
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from mmseg.structures import SegDataSample, extra_maps
from mmseg.utils.errors import SenFormerError

#: file name extensions a folder or glob input is filtered with
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')

InputType = Union[str, Path, np.ndarray]


class InferenceInputError(SenFormerError, FileNotFoundError):
    """An input names nothing usable (a missing file, an empty folder, an
    unreadable list file, two images that would write the same output)."""


def _is_image(path: str) -> bool:
    return osp.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _from_list_file(path: str) -> List[str]:
    """The paths of a text file, one a line (``#`` comments and blank lines
    skipped; relative paths are relative to the current directory)."""
    paths = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if not osp.isfile(line):
                raise InferenceInputError(
                    f'{path}, line {number}: image not found: {line}')
            paths.append(line)
    return paths


def collect_inputs(inputs: Union[InputType, Sequence[InputType]]
                   ) -> List[Union[str, np.ndarray]]:
    """Expand the inputs into a list of image paths and arrays, in order.

    Each input is a BGR ``H x W x 3`` array, an image file, a folder (its
    images, sorted, not recursive), a glob pattern (``data/**/*.jpg``) or a
    ``.txt`` file listing image paths.

    Raises:
        InferenceInputError: a missing path, an input with no image, a list
            entry that does not exist.
    """
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    found: List[Union[str, np.ndarray]] = []
    for item in items:
        if isinstance(item, np.ndarray):
            found.append(item)
            continue
        text = str(item)
        if osp.isdir(text):
            names = sorted(n for n in os.listdir(text) if _is_image(n))
            if not names:
                raise InferenceInputError(
                    f'no image ({", ".join(IMAGE_EXTENSIONS)}) in folder '
                    f'{text}')
            found += [osp.join(text, n) for n in names]
        elif osp.isfile(text):
            found += _from_list_file(text) if text.endswith('.txt') \
                else [text]
        elif glob.has_magic(text):
            matches = sorted(p for p in glob.glob(text, recursive=True)
                             if osp.isfile(p) and _is_image(p))
            if not matches:
                raise InferenceInputError(f'no image matches {text}')
            found += matches
        else:
            raise InferenceInputError(f'input not found: {text}')
    if not found:
        raise InferenceInputError('no input image given')
    return found


def output_stems(images: Sequence[Union[str, np.ndarray]]) -> List[str]:
    """Each input's output name: the file stem, ``image<i>`` for an array
    (``i`` its position among all the images).

    Raises:
        InferenceInputError: two inputs have the same stem (their outputs
            would overwrite each other).
    """
    stems, seen = [], {}
    for i, image in enumerate(images):
        stem = f'image{i}' if isinstance(image, np.ndarray) else \
            osp.splitext(osp.basename(image))[0]
        if stem in seen:
            raise InferenceInputError(
                f'{seen[stem]} and {image if isinstance(image, str) else i}'
                f' would both be written as {stem}.png; give them distinct '
                'file names or segment them separately')
        seen[stem] = image if isinstance(image, str) else i
        stems.append(stem)
    return stems


def _dataset_reduce_zero_label(config: Config) -> bool:
    """Whether the config's test dataset shifts its labels by one (then
    label maps are written as class index + 1, as ``tools/test.py``)."""
    from mmseg.registry import DATASETS
    dataset = config.get('test_dataloader', {}).get('dataset', {})
    if 'reduce_zero_label' in dataset:
        return bool(dataset['reduce_zero_label'])
    cls = DATASETS.get(dataset.get('type', ''))
    if cls is None:
        return False
    parameter = inspect.signature(cls.__init__).parameters.get(
        'reduce_zero_label')
    return bool(parameter.default) if parameter is not None and \
        parameter.default is not inspect.Parameter.empty else False


class Inferencer:
    """Segment images, folders, globs and path lists in batches and write
    label maps and overlays (see the module's description).

    Args:
        model: a config file, a :class:`Config` or a published model name
            (:mod:`mmseg.apis.model_zoo`).
        checkpoint: the weights (default for a model name: its published
            checkpoint, downloaded once).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        cfg_options: config overrides (checked like ``--cfg-options``).
        aug_test: multi-scale + flip test (the config's ``tta_pipeline``).
        learners: also predict (and write) each SenFormer learner's map.
        mirror: for a model name, where to fetch its checkpoint from (see
            :func:`mmseg.apis.model_zoo.fetch_checkpoint`).

    Example::

        inferencer = Inferencer('senformer_r50_512x512_ade20k')
        results = inferencer('photos/', batch_size=4, out_dir='out')
        results[0]['pred_sem_seg']   # H x W label map of the first photo
    """

    def __init__(self,
                 model: Union[str, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 cfg_options: Optional[dict] = None,
                 aug_test: bool = False,
                 learners: bool = False,
                 mirror: Optional[str] = None):
        from mmseg.cli import (ConfigError, attach_config_to_errors,
                               load_config)

        from .inference import init_model
        from .model_zoo import looks_like_model_name, resolve_model
        cfg_options = dict(cfg_options or {})
        if learners:
            cfg_options['model.test_cfg.return_learners'] = True
        if isinstance(model, (str, Path)):
            config, checkpoint = resolve_model(
                str(model), checkpoint, mirror=mirror) \
                if looks_like_model_name(str(model)) else (str(model),
                                                            checkpoint)
            config = load_config(config, cfg_options)
        else:
            config = copy.deepcopy(model)
            if cfg_options:
                config.merge_from_dict(cfg_options)
        if aug_test and 'tta_pipeline' not in config:
            raise ConfigError('aug_test needs tta_pipeline in the config')
        with attach_config_to_errors(config):
            self.model = init_model(config, checkpoint, device)
        self.aug_test = aug_test
        self.learners = learners
        self.reduce_zero_label = _dataset_reduce_zero_label(self.model.cfg)
        self._pipelines: Dict[bool, object] = {}
        self._visualizer = None

    # ------------------------------------------------------------------
    # batches

    def _pipeline(self, from_array: bool):
        from .inference import _test_pipeline
        if from_array not in self._pipelines:
            self._pipelines[from_array] = _test_pipeline(
                self.model.cfg, self.aug_test, from_array)
        return self._pipelines[from_array]

    def _prepare(self, image: Union[str, np.ndarray]) -> dict:
        from_array = isinstance(image, np.ndarray)
        data = dict(img=image) if from_array else dict(img_path=image)
        # carried into the sample's metainfo, as the dataset does
        data['reduce_zero_label'] = self.reduce_zero_label
        return self._pipeline(from_array)(data)

    @staticmethod
    def _shape_key(data: dict) -> tuple:
        inputs = data['inputs']
        if isinstance(inputs, list):  # test-time augmentation: the views
            return tuple(tuple(view.shape) for view in inputs)
        return tuple(inputs.shape)

    def _predict(self, batch: List[dict]) -> List[SegDataSample]:
        from .inference import _tta_predict
        collated = pseudo_collate(batch)
        with torch.no_grad():
            if self.aug_test:
                return _tta_predict(self.model, collated)
            return self.model.test_step(collated)

    def _batches(self, images, batch_size: int):
        """(indices, predictions) per batch. A batch only takes images of
        the same network input size: padding one to another's size would
        change its prediction (the learners attend over all positions),
        so results do not depend on the batch size."""
        pending, key = [], None
        for index, image in enumerate(images):
            data = self._prepare(image)
            data_key = self._shape_key(data)
            if pending and (data_key != key or len(pending) == batch_size):
                yield [i for i, _ in pending], \
                    self._predict([d for _, d in pending])
                pending = []
            pending.append((index, data))
            key = data_key
        if pending:
            yield [i for i, _ in pending], \
                self._predict([d for _, d in pending])

    # ------------------------------------------------------------------
    # outputs

    def _write_label_map(self, label: np.ndarray, path: str) -> None:
        from PIL import Image
        os.makedirs(osp.dirname(path), exist_ok=True)
        if self.reduce_zero_label:
            label = label + 1
        Image.fromarray(label.astype(np.uint8)).save(path)

    def write_overlay(self, image, label: np.ndarray, path: str,
                      opacity: float = 0.5, with_labels: bool = False) -> None:
        """Draw ``label`` (class indices) over ``image`` (path or BGR
        array) with the dataset's palette and write it to ``path``."""
        import mmcv
        from mmengine.structures import PixelData

        from mmseg.visualization import SegLocalVisualizer
        if self._visualizer is None:
            self._visualizer = SegLocalVisualizer(
                name=f'inferencer-{uuid.uuid4().hex}',
                **{k: v for k, v in self.model.dataset_meta.items()
                   if k in ('classes', 'palette')})
        self._visualizer.alpha = opacity
        rgb = image[..., ::-1] if isinstance(image, np.ndarray) else \
            mmcv.imread(image, channel_order='rgb')
        sample = SegDataSample(pred_sem_seg=PixelData(
            data=torch.from_numpy(label)[None]))
        self._visualizer.add_datasample(
            osp.basename(path), rgb, sample, draw_gt=False,
            with_labels=with_labels, out_file=path)

    # ------------------------------------------------------------------

    def __call__(self,
                 inputs: Union[InputType, Sequence[InputType]],
                 batch_size: int = 1,
                 out_dir: Optional[str] = None,
                 opacity: float = 0.5,
                 with_labels: bool = False,
                 write_vis: bool = True,
                 return_predictions: bool = True,
                 progress: bool = True) -> List[dict]:
        """Segment the inputs.

        Args:
            inputs: an image (path or BGR array), a folder, a glob, a
                ``.txt`` list of paths, or a list of these.
            batch_size: images per forward pass.
            out_dir: write ``pred/``, ``vis/`` (and ``learner<i>/``) there;
                nothing is written when None.
            opacity: weight of the label colours in the overlays.
            with_labels: write class names on the overlays' regions.
            write_vis: write the overlays (else only the label maps).
            return_predictions: keep the label maps in the results (turn
                off for many images: only the file names are kept).
            progress: show a progress bar.

        Returns:
            One dict per image, in input order: ``img_path`` (None for an
            array), ``stem``, and when written ``pred_file``/``vis_file``
            (``learner_pred_files`` ...); with ``return_predictions``
            ``pred_sem_seg`` (``H x W`` int64 class indices) and, with
            learners, ``learner_preds``.
        """
        from tqdm import tqdm
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        images = collect_inputs(inputs)
        stems = output_stems(images)
        init_default_scope(self.model.cfg.get('default_scope', 'mmseg'))
        results: List[dict] = [None] * len(images)  # type: ignore
        with tqdm(total=len(images), unit='img', disable=not progress,
                  desc='segmenting') as bar:
            for indices, samples in self._batches(images, batch_size):
                for index, sample in zip(indices, samples):
                    results[index] = self._finish(
                        images[index], stems[index], sample, out_dir,
                        opacity, with_labels, write_vis, return_predictions)
                bar.update(len(indices))
        return results

    def _finish(self, image, stem: str, sample: SegDataSample,
                out_dir: Optional[str], opacity: float, with_labels: bool,
                write_vis: bool, return_predictions: bool) -> dict:
        label = sample.pred_sem_seg.data[0].cpu().numpy()
        # the head's extra maps are its learners' (learner0, ...)
        extras = [
            (name, logits.argmax(dim=0).cpu().numpy())
            for name, logits in extra_maps(sample.get('extra_logits'))
        ] if self.learners else []
        learner_labels = [extra_label for _, extra_label in extras]
        result = dict(img_path=None if isinstance(image, np.ndarray) else
                      image, stem=stem)
        if out_dir is not None:
            maps = [('', label)] + extras
            for prefix, value in maps:
                pred_file = osp.join(out_dir, prefix, 'pred', stem + '.png')
                self._write_label_map(value, pred_file)
                key = 'pred_file' if not prefix else 'learner_pred_files'
                if prefix:
                    result.setdefault(key, []).append(pred_file)
                else:
                    result[key] = pred_file
                if write_vis:
                    vis_file = osp.join(out_dir, prefix, 'vis', stem + '.png')
                    self.write_overlay(image, value, vis_file, opacity,
                                        with_labels)
                    if prefix:
                        result.setdefault('learner_vis_files',
                                          []).append(vis_file)
                    else:
                        result['vis_file'] = vis_file
        if return_predictions:
            result['pred_sem_seg'] = label
            if self.learners:
                result['learner_preds'] = learner_labels
        return result
