"""Reading images and label maps into the pipeline's ``results`` dict."""
import io
from typing import Dict, Optional

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from PIL import Image, UnidentifiedImageError

from mmseg.registry import TRANSFORMS
from ..errors import DatasetError, DatasetNotFoundError

_IMREAD_FLAGS = dict(
    color=cv2.IMREAD_COLOR,
    grayscale=cv2.IMREAD_GRAYSCALE,
    unchanged=cv2.IMREAD_UNCHANGED)
_IMDECODE_BACKENDS = ('cv2', 'pillow', 'turbojpeg', 'tifffile')


def _check_imdecode_backend(owner: str, backend: str) -> None:
    if backend not in _IMDECODE_BACKENDS:
        raise ValueError(f'{owner}: imdecode_backend must be one of '
                         f'{_IMDECODE_BACKENDS}, got {backend!r}')


def read_bytes(path: str,
               what: str,
               backend_args: Optional[dict] = None) -> bytes:
    """The content of ``path`` through mmengine's file backends (local
    disk, or what ``backend_args`` / the path's prefix select).

    Raises:
        DatasetNotFoundError: no file at ``path``.
        DatasetError: the backend cannot read it (e.g. an HTTP error).
    """
    try:
        return fileio.get(path, backend_args=backend_args)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise DatasetNotFoundError(f'{what} {path!r} does not exist') from e
    except OSError as e:  # remote backends: HTTP errors, refused connections
        raise DatasetError(f'cannot read {what} {path!r}: {e}') from e


def _decode(data: bytes, flag: str, backend: str) -> Optional[np.ndarray]:
    """Decode with ``backend``; None when the bytes are not an image."""
    if not data:
        return None
    if backend == 'cv2':
        return cv2.imdecode(
            np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS[flag])
    try:
        return mmcv.imfrombytes(data, flag=flag, backend=backend)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def read_image(path: str,
               color_type: str = 'color',
               imdecode_backend: str = 'cv2',
               backend_args: Optional[dict] = None) -> np.ndarray:
    """Decode an image file (BGR channel order).

    Raises:
        DatasetNotFoundError: no file at ``path``.
        DatasetError: the file is not a decodable image.
    """
    data = read_bytes(path, 'image file', backend_args)
    img = _decode(data, color_type, imdecode_backend)
    if img is None:
        raise DatasetError(f'image file {path!r} is empty or corrupt '
                           f'({len(data)} bytes, not a decodable image)')
    return img


def read_label_map(path: str,
                   imdecode_backend: str = 'pillow',
                   backend_args: Optional[dict] = None) -> np.ndarray:
    """Read a single-channel label map (``H x W``; palette PNGs give their
    indices, not their colours).

    Raises:
        DatasetNotFoundError: no file at ``path``.
        DatasetError: unreadable file, or a colour (multi-channel) image.
    """
    data = read_bytes(path, 'label map', backend_args)
    if imdecode_backend == 'pillow':
        try:
            with Image.open(io.BytesIO(data)) as pil:
                label = np.array(pil)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DatasetError(
                f'label map {path!r} is corrupt or not an image: {e}') from e
    else:
        label = _decode(data, 'unchanged', imdecode_backend)
        if label is None:
            raise DatasetError(f'label map {path!r} is corrupt or not an '
                               f'image ({imdecode_backend} cannot decode it)')
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[..., 0]
    if label.ndim != 2:
        raise DatasetError(
            f'label map {path!r} has shape {label.shape}; expected a '
            'single-channel image of class indices (a colour label image '
            'must first be converted to indices)')
    if label.dtype != np.uint8 and label.size and label.min() >= 0 \
            and label.max() <= 255:
        label = label.astype(np.uint8)
    return label


def remap_labels(label: np.ndarray, mapping: Dict[int, int]) -> np.ndarray:
    """Replace each value ``old`` of ``label`` by ``mapping[old]`` (values
    without an entry are kept)."""
    if label.dtype == np.uint8:
        table = np.arange(256, dtype=np.uint8)
        for old, new in mapping.items():
            if 0 <= old < 256:
                table[old] = new
        return table[label]
    out = label.copy()
    for old, new in mapping.items():
        out[label == old] = new
    return out


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """0 ("other") becomes 255 (ignored), k becomes k - 1, 255 stays 255."""
    mapping = {k: k - 1 for k in range(1, 255)}
    mapping[0] = 255
    if label.dtype == np.uint8:
        return remap_labels(label, mapping)
    out = label.astype(np.int64) - 1
    out[label == 0] = 255
    out[label == 255] = 255
    return out.astype(label.dtype)


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Load ``results['img_path']`` as a BGR ``H x W x 3`` uint8 array.

    Added keys: ``img``, ``img_shape`` and ``ori_shape`` (both ``(H, W)``).
    Arguments as MMCV's ``LoadImageFromFile`` (which MMSegmentation 1.x
    uses); a missing or corrupt file raises a :class:`DatasetError` naming
    it.

    Args:
        to_float32: convert the image to float32.
        color_type: ``'color'``, ``'grayscale'`` or ``'unchanged'``.
        imdecode_backend: ``'cv2'``, ``'pillow'``, ``'turbojpeg'`` or
            ``'tifffile'`` (the last two need their packages).
        ignore_empty: a missing file makes the transform return None
            instead of raising.
        backend_args: mmengine file backend arguments (None: by the path's
            prefix, the local disk for plain paths).
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 ignore_empty: bool = False,
                 *,
                 backend_args: Optional[dict] = None):
        if color_type not in _IMREAD_FLAGS:
            raise ValueError(f'LoadImageFromFile: color_type {color_type!r} '
                             f'is not one of {sorted(_IMREAD_FLAGS)}')
        _check_imdecode_backend(type(self).__name__, imdecode_backend)
        self.to_float32 = to_float32
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.ignore_empty = ignore_empty
        self.backend_args = None if backend_args is None else \
            dict(backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        try:
            img = read_image(results['img_path'], self.color_type,
                             self.imdecode_backend, self.backend_args)
        except DatasetNotFoundError:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ignore_empty={self.ignore_empty}, '
                f'to_float32={self.to_float32}, '
                f'color_type={self.color_type!r}, '
                f'imdecode_backend={self.imdecode_backend!r}, '
                f'backend_args={self.backend_args})')


@TRANSFORMS.register_module()
class LoadImageFromNDArray(LoadImageFromFile):
    """Take ``results['img']`` (a BGR array already in memory) as the
    image, for inference on arrays; same output keys as
    :class:`LoadImageFromFile` with ``img_path`` None."""

    def transform(self, results: dict) -> dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise TypeError('LoadImageFromNDArray: results["img"] must be an '
                            'H x W (x C) numpy array, got '
                            f'{type(img).__name__}')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_path'] = None
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadAnnotations(BaseTransform):
    """Load ``results['seg_map_path']`` as ``results['gt_seg_map']``
    (``H x W``, uint8 for usual label maps).

    In this order, as in MMSegmentation 1.x: ``reduce_zero_label`` (0 to
    255, k to k - 1), then the dataset's ``label_map`` (class subset). The
    label map must have the image's size, and, when the dataset tells its
    number of classes, only values ``0..num_classes-1`` or the ignore index.

    Args:
        reduce_zero_label: None follows the dataset (``results
            ['reduce_zero_label']``); a bool must agree with it.
        backend_args: mmengine file backend arguments (None: by the path's
            prefix, the local disk for plain paths).
        imdecode_backend: ``'pillow'`` (palette PNGs give their indices),
            ``'cv2'``, ``'turbojpeg'`` or ``'tifffile'``.

    Raises:
        DatasetError: unreadable label map, a size different from the
            image's, values outside the classes, or ``reduce_zero_label``
            disagreeing with the dataset's.
    """

    def __init__(self,
                 reduce_zero_label: Optional[bool] = None,
                 backend_args: Optional[dict] = None,
                 imdecode_backend: str = 'pillow') -> None:
        _check_imdecode_backend(type(self).__name__, imdecode_backend)
        self.reduce_zero_label = reduce_zero_label
        self.backend_args = None if backend_args is None else \
            dict(backend_args)
        self.imdecode_backend = imdecode_backend

    def _reduce(self, results: dict) -> bool:
        from_dataset = results.get('reduce_zero_label')
        if self.reduce_zero_label is None:
            return bool(from_dataset)
        if from_dataset is not None and from_dataset != \
                self.reduce_zero_label:
            raise DatasetError(
                f'LoadAnnotations(reduce_zero_label={self.reduce_zero_label})'
                f' disagrees with the dataset (reduce_zero_label='
                f'{from_dataset}) for {results.get("seg_map_path")!r}; set '
                'it once, on the dataset')
        return self.reduce_zero_label

    def transform(self, results: dict) -> dict:
        path = results.get('seg_map_path')
        if path is None:
            raise DatasetError(
                f'LoadAnnotations: sample {results.get("img_path")!r} has no '
                "label map (the dataset's data_prefix has no seg_map_path)")
        label = read_label_map(path, self.imdecode_backend,
                               self.backend_args)
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(ori_shape[:2]) != label.shape:
            raise DatasetError(
                f'label map {path!r} is {label.shape[0]}x{label.shape[1]} '
                f'(HxW) but its image {results.get("img_path")!r} is '
                f'{ori_shape[0]}x{ori_shape[1]}')
        reduce = self._reduce(results)
        if reduce:
            label = reduce_zero_label(label)
        label_map = results.get('label_map')
        if label_map:
            label = remap_labels(label, label_map)
        self._check_range(label, results, reduce)
        results['gt_seg_map'] = label
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        return results

    @staticmethod
    def _check_range(label: np.ndarray, results: dict, reduced: bool):
        num_classes = results.get('num_classes')
        if num_classes is None:
            return
        ignore_index = results.get('ignore_index', 255)
        values = np.unique(label) if label.dtype != np.uint8 else \
            np.flatnonzero(np.bincount(label.ravel(), minlength=256))
        bad = [
            int(v) for v in values
            if (v < 0 or v >= num_classes) and v != ignore_index
        ]
        if bad:
            steps = [f'reduce_zero_label={reduced}']
            if results.get('label_map'):
                steps.append('label_map')
            raise DatasetError(
                f'label map {results["seg_map_path"]!r} has value(s) '
                f'{bad[:8]} outside the {num_classes} classes '
                f'(0..{num_classes - 1}) and the ignore index {ignore_index} '
                f'(after {", ".join(steps)}); check the dataset type, '
                'reduce_zero_label and how the label maps were made')

    def __repr__(self) -> str:
        return (f'{type(self).__name__}'
                f'(reduce_zero_label={self.reduce_zero_label}, '
                f'imdecode_backend={self.imdecode_backend!r}, '
                f'backend_args={self.backend_args})')
