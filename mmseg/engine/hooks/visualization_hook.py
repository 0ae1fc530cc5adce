"""Drawing predictions during validation and testing."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmseg.registry import HOOKS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer


@HOOKS.register_module()
class SegVisualizationHook(Hook):
    """Draw ground truth and prediction of evaluated images.

    Off unless ``draw=True`` (``tools/test.py --show-dir`` turns it on).

    Args:
        draw: draw at all.
        interval: draw every ``interval``-th validation image.
        show: display each drawing in a window.
        wait_time: seconds a shown drawing stays.
        out_dir: write drawings as png files there (testing), instead of
            to the visualizer's back-ends.
    """

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 show: bool = False,
                 wait_time: float = 0.,
                 out_dir: Optional[str] = None):
        if interval < 1:
            raise ValueError(f'SegVisualizationHook: interval must be >= 1, '
                             f'got {interval}')
        self.draw = draw
        self.interval = interval
        self.show = show
        self.wait_time = wait_time
        self.out_dir = out_dir

    def _visualizer(self) -> SegLocalVisualizer:
        return SegLocalVisualizer.get_current_instance()

    def _draw(self, sample: SegDataSample, step: int,
              out_file: Optional[str]) -> None:
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        self._visualizer().add_datasample(
            osp.basename(sample.img_path),
            image,
            sample,
            show=self.show,
            wait_time=self.wait_time,
            out_file=out_file,
            step=step)

    def after_val_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                       outputs: Sequence[SegDataSample]) -> None:
        if not self.draw or batch_idx % self.interval:
            return
        for sample in outputs:
            self._draw(sample, runner.iter, None)

    def after_test_iter(self, runner: Runner, batch_idx: int,
                        data_batch: dict,
                        outputs: Sequence[SegDataSample]) -> None:
        if not self.draw:
            return
        for sample in outputs:
            out_file = None
            if self.out_dir is not None:
                name = osp.splitext(osp.basename(sample.img_path))[0]
                out_file = osp.join(self.out_dir, name + '.png')
            self._draw(sample, batch_idx, out_file)
