"""Training augmentations of MMSegmentation that mmcv does not provide.

Resizing, flipping, padding and test-time augmentation are mmcv's
(``Resize``, ``RandomResize``, ``RandomFlip``, ``Pad``, ``TestTimeAug``),
as in MMSegmentation 1.x; they are found by name from the ``mmseg`` scope.
All randomness comes from ``numpy.random``, which mmengine seeds per worker.
"""
from typing import Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop a random ``crop_size`` window of the image and its label maps.

    With ``cat_max_ratio < 1`` a window is re-drawn (up to 10 times) while
    a single class covers at least ``cat_max_ratio`` of its labelled
    pixels (pixels equal to ``ignore_index`` are not counted) or fewer than
    two classes are present; after 10 re-draws the last window is kept.
    Images smaller than the window are cropped to their own size along that
    side (padding is done later).

    Modified keys: ``img``, ``img_shape``, ``gt_seg_map`` and the other
    ``seg_fields``.

    Args:
        crop_size: ``(h, w)`` of the window, or an int for a square.
        cat_max_ratio: largest share of one class in the window.
        ignore_index: label value left out of the class shares.
    """

    def __init__(self,
                 crop_size: Union[int, Tuple[int, int]],
                 cat_max_ratio: float = 1.,
                 ignore_index: int = 255) -> None:
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(
                f'RandomCrop: crop_size must be (h, w) > 0, got {crop_size}')
        self.crop_size = tuple(crop_size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _random_window(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """``(y1, y2, x1, x2)`` of a window inside an image of ``shape``."""
        margin_h = max(shape[0] - self.crop_size[0], 0)
        margin_w = max(shape[1] - self.crop_size[1], 0)
        y1 = np.random.randint(0, margin_h + 1)
        x1 = np.random.randint(0, margin_w + 1)
        return (y1, y1 + min(self.crop_size[0], shape[0]), x1,
                x1 + min(self.crop_size[1], shape[1]))

    def _balanced(self, label: np.ndarray) -> bool:
        values, counts = np.unique(label, return_counts=True)
        counts = counts[values != self.ignore_index]
        return len(counts) > 1 and \
            counts.max() / counts.sum() < self.cat_max_ratio

    @cache_randomness
    def crop_window(self, results: dict) -> Tuple[int, ...]:
        """Draw the window (with the class-balance re-draws)."""
        shape = results['img'].shape
        window = self._random_window(shape)
        label = results.get('gt_seg_map')
        if self.cat_max_ratio < 1. and label is not None:
            for _ in range(10):
                if self._balanced(self._crop(label, window)):
                    break
                window = self._random_window(shape)
        return window

    @staticmethod
    def _crop(array: np.ndarray, window: Tuple[int, ...]) -> np.ndarray:
        y1, y2, x1, x2 = window
        return array[y1:y2, x1:x2, ...]

    def transform(self, results: dict) -> dict:
        window = self.crop_window(results)
        img = self._crop(results['img'], window)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        keys = set(results.get('seg_fields', []))
        if results.get('gt_seg_map') is not None:
            keys.add('gt_seg_map')
        for key in keys:
            results[key] = self._crop(results[key], window)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(crop_size={self.crop_size}, '
                f'cat_max_ratio={self.cat_max_ratio}, '
                f'ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """Random photometric changes of a BGR uint8 image, each applied with
    probability 0.5, in this order:

    1. brightness: add ``delta ~ U(-brightness_delta, brightness_delta)``;
    2. contrast, either here or last (50/50): multiply by
       ``alpha ~ U(*contrast_range)``;
    3. saturation: multiply the HSV saturation by
       ``alpha ~ U(*saturation_range)``;
    4. hue: shift the HSV hue by ``randint(-hue_delta, hue_delta)``
       (OpenCV hue, modulo 180).

    Each step clips to 0..255 and returns uint8.

    Modified keys: ``img``.
    """

    def __init__(self,
                 brightness_delta: int = 32,
                 contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5),
                 hue_delta: int = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    @staticmethod
    def _scale_shift(img: np.ndarray, alpha: float = 1.,
                     beta: float = 0.) -> np.ndarray:
        img = img.astype(np.float32) * alpha + beta
        return np.clip(img, 0, 255).astype(np.uint8)

    def _brightness(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return self._scale_shift(
                img,
                beta=np.random.uniform(-self.brightness_delta,
                                       self.brightness_delta))
        return img

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return self._scale_shift(
                img,
                alpha=np.random.uniform(self.contrast_lower,
                                        self.contrast_upper))
        return img

    def _saturation(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = self._scale_shift(
                hsv[:, :, 1],
                alpha=np.random.uniform(self.saturation_lower,
                                        self.saturation_upper))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def _hue(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta) \
                if self.hue_delta else 0
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + shift) % 180
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                'PhotoMetricDistortion needs a BGR uint8 H x W x 3 image, '
                f'got {img.dtype} {img.shape} for {results.get("img_path")!r}'
                ' (put it before any normalisation or float conversion)')
        img = self._brightness(img)
        contrast_last = np.random.randint(2) == 0
        if not contrast_last:
            img = self._contrast(img)
        img = self._saturation(img)
        img = self._hue(img)
        if contrast_last:
            img = self._contrast(img)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'brightness_delta={self.brightness_delta}, '
                f'contrast_range=({self.contrast_lower}, '
                f'{self.contrast_upper}), saturation_range='
                f'({self.saturation_lower}, {self.saturation_upper}), '
                f'hue_delta={self.hue_delta})')
