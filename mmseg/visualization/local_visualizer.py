"""Drawing label maps over images."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from mmengine.visualization import Visualizer

from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample


@VISUALIZERS.register_module()
class SegLocalVisualizer(Visualizer):
    """Blend label maps (ground truth and/or prediction) over an image with
    the dataset's palette, optionally writing class names on the regions.

    Pixels whose label is not a class (e.g. the ignore index 255) keep the
    image colour. The class names and palette come from ``dataset_meta``
    (set by the runner from the dataset, or ``classes`` / ``palette``
    here); without a palette, fixed pseudo-random colours are used.

    Args:
        name: instance name (mmengine visualizers are named singletons).
        image: optional image to start with (RGB).
        vis_backends: mmengine visualisation back-ends.
        save_dir: where the back-ends write.
        classes: class names.
        palette: one RGB colour per class.
        alpha: weight of the label colour in the blend (0..1).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None,
                 palette: Optional[Sequence[Sequence[int]]] = None,
                 alpha: float = 0.8) -> None:
        super().__init__(
            name=name,
            image=image,
            vis_backends=vis_backends,
            save_dir=save_dir)
        if not 0 <= alpha <= 1:
            raise ValueError(f'SegLocalVisualizer: alpha must be in [0, 1], '
                             f'got {alpha}')
        self.alpha = alpha
        if classes is not None or palette is not None:
            self.set_dataset_meta(classes, palette)

    def set_dataset_meta(self,
                         classes: Optional[Sequence[str]] = None,
                         palette: Optional[Sequence[Sequence[int]]] = None
                         ) -> None:
        """Set the class names and palette used to draw."""
        if classes is not None and palette is not None and \
                len(classes) != len(palette):
            raise ValueError(f'SegLocalVisualizer: {len(palette)} palette '
                             f'colours for {len(classes)} classes')
        self.dataset_meta = dict(classes=classes, palette=palette)

    def _palette(self, num_labels: int) -> np.ndarray:
        """``N x 3`` uint8 RGB colours, N >= ``num_labels``."""
        meta = self.dataset_meta or {}
        palette = meta.get('palette')
        if palette is not None:
            return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
        count = max(num_labels, len(meta.get('classes') or ()))
        return np.random.RandomState(42).randint(
            0, 255, (count, 3)).astype(np.uint8)

    def draw_sem_seg(self,
                     image: np.ndarray,
                     sem_seg: Union[np.ndarray, torch.Tensor],
                     with_labels: bool = True) -> np.ndarray:
        """Blend a label map over an RGB image.

        Args:
            image: ``H x W x 3`` uint8 RGB image.
            sem_seg: ``H x W`` or ``1 x H x W`` class indices.
            with_labels: write each present class's name on its region.

        Returns:
            The ``H x W x 3`` uint8 RGB drawing.
        """
        if isinstance(sem_seg, torch.Tensor):
            sem_seg = sem_seg.cpu().numpy()
        sem_seg = np.asarray(sem_seg)
        if sem_seg.ndim == 3:
            sem_seg = sem_seg[0]
        if sem_seg.shape != image.shape[:2]:
            raise ValueError(
                f'SegLocalVisualizer: label map is {sem_seg.shape} but the '
                f'image is {image.shape[:2]}')
        classes = (self.dataset_meta or {}).get('classes')
        num_classes = len(classes) if classes else int(
            sem_seg[sem_seg != 255].max(initial=-1)) + 1
        palette = self._palette(num_classes)
        num_classes = min(num_classes, len(palette))
        valid = (sem_seg >= 0) & (sem_seg < num_classes)
        colours = palette[np.where(valid, sem_seg, 0)]
        blended = image.astype(np.float32)
        blended[valid] = (1 - self.alpha) * blended[valid] + \
            self.alpha * colours[valid]
        drawing = np.clip(blended, 0, 255).astype(np.uint8)
        if with_labels and classes:
            for label in np.unique(sem_seg[valid]):
                self._write_name(drawing, sem_seg == label,
                                 str(classes[label]), palette[label])
        return drawing

    @staticmethod
    def _write_name(drawing: np.ndarray, mask: np.ndarray, text: str,
                    colour: np.ndarray) -> None:
        """Write ``text`` at the point of ``mask`` farthest from its border,
        on a box of the class colour."""
        distance = cv2.distanceTransform(
            np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(distance.argmax(), distance.shape)
        font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
        (w, h), baseline = cv2.getTextSize(text, font, scale, thickness)
        x = int(np.clip(x - w // 2, 0, max(drawing.shape[1] - w, 0)))
        y = int(np.clip(y + h // 2, h, drawing.shape[0] - baseline))
        cv2.rectangle(drawing, (x, y - h - 1), (x + w, y + baseline),
                      tuple(int(c) for c in colour), -1)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
        cv2.putText(drawing, text, (x, y), font, scale, ink, thickness,
                    cv2.LINE_AA)

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: bool = True) -> np.ndarray:
        """Draw a sample's ground truth and/or prediction side by side.

        Args:
            name: image name for the back-ends / window.
            image: ``H x W x 3`` uint8 RGB image.
            data_sample: with ``gt_sem_seg`` and/or ``pred_sem_seg``.
            draw_gt, draw_pred: which label maps to draw.
            show: display the drawing in a window.
            wait_time: seconds the window stays (0: until a key).
            out_file: write the drawing there (else to the back-ends).
            step: global step for the back-ends.
            with_labels: write class names on the regions.

        Returns:
            The drawing (RGB), ground truth left of prediction.
        """
        panels = []
        if data_sample is not None:
            if draw_gt and 'gt_sem_seg' in data_sample:
                panels.append(
                    self.draw_sem_seg(image, data_sample.gt_sem_seg.data,
                                      with_labels))
            if draw_pred and 'pred_sem_seg' in data_sample:
                panels.append(
                    self.draw_sem_seg(image, data_sample.pred_sem_seg.data,
                                      with_labels))
        drawing = np.concatenate(panels, axis=1) if panels else image
        self.set_image(drawing)
        if show:
            self.show(drawing, win_name=name, wait_time=wait_time)
        if out_file is not None:
            folder = osp.dirname(out_file)
            if folder:
                os.makedirs(folder, exist_ok=True)
            ok, encoded = cv2.imencode(
                osp.splitext(out_file)[1] or '.png', drawing[..., ::-1])
            if not ok:
                raise OSError(f'could not encode {out_file!r} (unknown '
                              'image format?)')
            # all or nothing: a full disk or a kill leaves no half image;
            # imported here as mmseg.engine imports this module
            from mmseg.engine.atomic_io import atomic_write
            atomic_write(out_file, lambda f: f.write(encoded.tobytes()))
        else:
            self.add_image(name, drawing, step)
        return drawing
