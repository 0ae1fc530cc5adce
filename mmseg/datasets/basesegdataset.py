"""A folder of images and label maps as a segmentation dataset."""
import logging
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from mmseg.registry import DATASETS
from .errors import DatasetError, DatasetNotFoundError


def _scan(folder: str, suffix: str) -> List[str]:
    """Paths (relative to ``folder``, sorted) of the files ending with
    ``suffix`` under ``folder``, sub-folders included."""
    found = []
    for root, _, files in os.walk(folder, followlinks=True):
        rel_root = osp.relpath(root, folder)
        for name in files:
            if name.endswith(suffix):
                found.append(
                    name if rel_root == '.' else osp.join(rel_root, name))
    return sorted(found)


@DATASETS.register_module()
class BaseSegDataset(BaseDataset):
    """Images and label maps in two folders, MMSegmentation 1.x style.

    The images are the files ending with ``img_suffix`` under
    ``data_prefix['img_path']`` (sub-folders included); the label map of
    ``<img_path>/<name><img_suffix>`` is
    ``<seg_map_path>/<name><seg_map_suffix>``. With a split file
    (``ann_file``) only the names it lists (one per line, without suffix)
    are used. Relative paths are relative to ``data_root``.

    A few config lines turn any such folder into a dataset::

        dict(type='BaseSegDataset', data_root='data/my_set',
             data_prefix=dict(img_path='img', seg_map_path='ann'),
             img_suffix='.jpg', seg_map_suffix='.png',
             metainfo=dict(classes=('sky', 'tree'), palette=[[0, 0, 255],
                                                           [0, 255, 0]]))

    Label conventions applied when loading (by ``LoadAnnotations``):
    ``reduce_zero_label`` maps 0 to 255 (ignored) and k to k - 1; choosing a
    subset of the dataset's classes in ``metainfo['classes']`` remaps each
    kept class to its index in the subset and every other class to
    ``ignore_index``.

    Files are only looked at when the dataset is fully initialised (at once,
    or on first use with ``lazy_init=True``); bad input raises
    :class:`DatasetError` / :class:`DatasetNotFoundError` naming the path.

    Args:
        ann_file: optional split file, one image name per line.
        img_suffix: suffix of image files.
        seg_map_suffix: suffix of label-map files.
        metainfo: ``classes`` and ``palette`` overriding ``METAINFO``.
        data_root: root that relative paths are joined to.
        data_prefix: ``img_path`` and ``seg_map_path`` folders; without
            ``seg_map_path`` (or with None) the dataset has no labels.
        filter_cfg, indices, serialize_data, max_refetch: as mmengine's
            ``BaseDataset``.
        pipeline: transforms applied to each sample.
        test_mode: evaluation dataset (never re-draws a failed sample).
        lazy_init: defer reading the folders until first use.
        ignore_index: label value that is not evaluated nor trained on.
        reduce_zero_label: label 0 means "other": ignore it and shift the
            other labels down by one.
        skip_bad_samples: when training, replace a sample whose files are
            broken (corrupt or truncated image/label map, wrong size, label
            values outside the classes) by another random one and log a
            warning naming the file, instead of stopping with
            :class:`DatasetError`. Off by default; never in ``test_mode``
            (metrics must see every sample).
    """
    METAINFO: dict = dict()

    def __init__(self,
                 ann_file: str = '',
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 metainfo: Optional[dict] = None,
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img_path='', seg_map_path=''),
                 filter_cfg: Optional[dict] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 serialize_data: bool = True,
                 pipeline: List[Union[dict, Callable]] = [],
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000,
                 ignore_index: int = 255,
                 reduce_zero_label: bool = False,
                 skip_bad_samples: bool = False) -> None:
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.skip_bad_samples = skip_bad_samples
        self._given_data_root = data_root
        unknown = set(data_prefix) - {'img_path', 'seg_map_path'}
        if unknown:
            raise DatasetError(
                f'{type(self).__name__}: unknown data_prefix key(s) '
                f'{sorted(unknown)}; use img_path and seg_map_path')
        # seg_map_path=None (or absent) means "no labels"; mmengine only
        # joins string prefixes with data_root
        self._has_labels = data_prefix.get('seg_map_path') is not None
        data_prefix = {k: v for k, v in data_prefix.items() if v is not None}

        # the pipeline's transforms are found by name in the current scope;
        # outside any (a dataset built directly) that must be ours, or
        # e.g. mmcv's LoadAnnotations would silently be used instead
        scope = None if DefaultScope.get_current_instance() else 'mmseg'
        with DefaultScope.overwrite_default_scope(scope):
            super().__init__(
                ann_file=ann_file,
                metainfo=metainfo,
                data_root=data_root or '',
                data_prefix=data_prefix,
                filter_cfg=filter_cfg,
                indices=indices,
                serialize_data=serialize_data,
                pipeline=pipeline,
                test_mode=test_mode,
                lazy_init=True,
                max_refetch=max_refetch)

        new_classes = self._metainfo.get('classes')
        self.label_map = self.get_label_map(new_classes)
        self._metainfo.update(
            dict(
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label))
        self._metainfo.update(self._resolve_palette())
        if test_mode and not self._metainfo.get('classes'):
            raise DatasetError(
                f'{type(self).__name__}: a test dataset needs class names '
                "(metainfo=dict(classes=...)) for its metric")
        if not lazy_init:
            self.full_init()

    def prepare_data(self, idx: int):
        """The sample after the pipeline; with ``skip_bad_samples`` (when
        training) None for a broken one, which mmengine's ``__getitem__``
        replaces by another random sample (at most ``max_refetch`` times)."""
        if not self.skip_bad_samples or self.test_mode:
            return super().prepare_data(idx)
        try:
            return super().prepare_data(idx)
        except DatasetError as e:
            print_log(f'skipping a broken sample: {e}', logger='current',
                      level=logging.WARNING)
            return None

    @property
    def num_classes(self) -> Optional[int]:
        classes = self._metainfo.get('classes')
        return len(classes) if classes else None

    @classmethod
    def get_label_map(cls,
                      new_classes: Optional[Sequence[str]] = None
                      ) -> Optional[Dict[int, int]]:
        """Mapping from the class indices of ``METAINFO`` to those of
        ``new_classes`` (classes left out map to 255), or None when the
        classes are unchanged.

        Raises:
            DatasetError: a class of ``new_classes`` is not a class of the
                dataset.
        """
        old_classes = cls.METAINFO.get('classes')
        if (new_classes is None or old_classes is None
                or list(new_classes) == list(old_classes)):
            return None
        unknown = [c for c in new_classes if c not in old_classes]
        if unknown:
            raise DatasetError(
                f'{cls.__name__}: metainfo classes {unknown} are not classes '
                f'of the dataset (it has {len(old_classes)}: '
                f'{list(old_classes)[:5]}...)')
        new_index = {c: i for i, c in enumerate(new_classes)}
        return {
            old_id: new_index.get(c, 255)
            for old_id, c in enumerate(old_classes)
        }

    def _resolve_palette(self) -> dict:
        """Palette matching the (possibly new) classes: the given one, the
        default one re-ordered for a class subset, or fixed random colours
        for classes without a default colour."""
        classes = self._metainfo.get('classes')
        palette = self._metainfo.get('palette')
        if not classes:
            return {}
        default_palette = self.METAINFO.get('palette')

        def rows(colours):
            return [list(c) for c in colours] if colours is not None else None

        if palette is not None and rows(palette) != rows(default_palette):
            # a palette of the user's
            if len(palette) == len(classes):
                return dict(palette=rows(palette))
            # a config's palette left behind when its classes were
            # overridden: colours matter less than the run
            print_log(
                f'{type(self).__name__}: metainfo palette has '
                f'{len(palette)} colours for {len(classes)} classes; using '
                'generated colours instead', logger='current',
                level=logging.WARNING)
            return dict(palette=self._generated_palette(len(classes)))
        if self.label_map is not None and default_palette:
            kept = sorted((new, old) for old, new in self.label_map.items()
                          if new != 255)
            return dict(
                palette=[list(default_palette[old]) for _, old in kept])
        if default_palette and len(default_palette) == len(classes):
            return dict(palette=rows(default_palette))
        return dict(palette=self._generated_palette(len(classes)))

    @staticmethod
    def _generated_palette(num_classes: int) -> List[List[int]]:
        # fixed seed: the same classes always get the same colours
        rng = np.random.RandomState(42)
        return rng.randint(0, 255, (num_classes, 3)).tolist()

    # ------------------------------------------------------------------
    # reading the folders

    def _folders(self):
        img_dir = self.data_prefix.get('img_path', '') or '.'
        ann_dir = (self.data_prefix.get('seg_map_path', '') or '.') \
            if self._has_labels else None
        name = type(self).__name__
        root = self._given_data_root
        if root and not osp.isdir(root):
            raise DatasetNotFoundError(
                f'{name}: data_root {root!r} does not exist (absolute path '
                f'{osp.abspath(root)}); prepare the dataset there or change '
                'data_root')
        for key, folder in (('img_path', img_dir), ('seg_map_path', ann_dir)):
            if folder is not None and not osp.isdir(folder):
                raise DatasetNotFoundError(
                    f'{name}: data_prefix {key} folder {folder!r} does not '
                    f'exist (absolute path {osp.abspath(folder)})')
        return img_dir, ann_dir

    def _read_split(self) -> List[str]:
        if not osp.isfile(self.ann_file):
            raise DatasetNotFoundError(
                f'{type(self).__name__}: split file (ann_file) '
                f'{self.ann_file!r} does not exist (absolute path '
                f'{osp.abspath(self.ann_file)})')
        with open(self.ann_file) as f:
            return [line.strip() for line in f if line.strip()]

    def _sample(self, img_path: str, seg_map_path: Optional[str]) -> dict:
        return dict(
            img_path=img_path,
            seg_map_path=seg_map_path,
            label_map=self.label_map,
            reduce_zero_label=self.reduce_zero_label,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            seg_fields=[])

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path, seg_map_path, label_map, reduce_zero_label,
        num_classes, ignore_index, seg_fields)`` per image.

        Raises:
            DatasetNotFoundError: a folder, the split file or a listed file
                does not exist.
            DatasetError: no images, or an image without label map (or a
                label map without image).
        """
        img_dir, ann_dir = self._folders()
        name = type(self).__name__
        data_list = []
        if self.ann_file:
            for lineno, stem in enumerate(self._read_split(), 1):
                img_path = osp.join(img_dir, stem + self.img_suffix)
                seg_path = osp.join(ann_dir, stem + self.seg_map_suffix) \
                    if ann_dir is not None else None
                for kind, path in (('image', img_path), ('label map',
                                                         seg_path)):
                    if path is not None and not osp.isfile(path):
                        raise DatasetNotFoundError(
                            f'{name}: {kind} {path!r} of line {lineno} '
                            f'({stem!r}) of split file {self.ann_file!r} '
                            'does not exist')
                data_list.append(self._sample(img_path, seg_path))
            if not data_list:
                raise DatasetError(
                    f'{name}: split file {self.ann_file!r} lists no images')
            return data_list

        images = _scan(img_dir, self.img_suffix)
        if not images:
            raise DatasetError(
                f'{name}: no images ending with {self.img_suffix!r} under '
                f'{img_dir!r}; check data_root, data_prefix and img_suffix')
        stems = [p[:-len(self.img_suffix)] for p in images]
        if ann_dir is not None:
            labels = _scan(ann_dir, self.seg_map_suffix)
            label_stems = {p[:-len(self.seg_map_suffix)] for p in labels}
            missing = [s for s in stems if s not in label_stems]
            if missing:
                raise DatasetError(
                    f'{name}: image '
                    f'{osp.join(img_dir, missing[0] + self.img_suffix)!r} has '
                    'no label map (expected '
                    f'{osp.join(ann_dir, missing[0] + self.seg_map_suffix)!r}'
                    f'); {len(missing)} of {len(stems)} images are unpaired')
            orphans = sorted(label_stems - set(stems))
            if orphans:
                raise DatasetError(
                    f'{name}: label map '
                    f'{osp.join(ann_dir, orphans[0] + self.seg_map_suffix)!r}'
                    ' has no image (expected '
                    f'{osp.join(img_dir, orphans[0] + self.img_suffix)!r}); '
                    f'{len(orphans)} label maps are unpaired')
        for stem in stems:
            seg_path = osp.join(ann_dir, stem + self.seg_map_suffix) \
                if ann_dir is not None else None
            data_list.append(
                self._sample(osp.join(img_dir, stem + self.img_suffix),
                             seg_path))
        return data_list
