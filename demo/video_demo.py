"""Segment a video file or a camera stream frame by frame.

    python demo/video_demo.py VIDEO CONFIG CHECKPOINT [--output-file F]
        [--device cpu|cuda:0] [--opacity 0.5] [--show] [--max-frames N]
        [--debug]
    python demo/video_demo.py VIDEO MODEL_NAME [CHECKPOINT] [...]

VIDEO is a file path or a camera index (``0``). Without ``--output-file``
the overlays are shown in a window (``--show``).
"""
import argparse
import sys

from mmengine.config import DictAction

from mmseg.cli import (ConfigError, add_debug_argument,
                       attach_config_to_errors, load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Segment a video')
    parser.add_argument('video', help='video file or camera index')
    parser.add_argument('config', help='config file or published model name')
    parser.add_argument(
        'checkpoint', nargs='?',
        help='checkpoint file (default for a model name: its published one)')
    parser.add_argument('--output-file', help='output video (.mp4 / .avi)')
    parser.add_argument('--output-fourcc', default='mp4v',
                        help='four-character codec of the output')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument('--opacity', type=float, default=0.5)
    parser.add_argument('--show', action='store_true',
                        help='show the overlays in a window')
    parser.add_argument('--max-frames', type=int, default=None,
                        help='stop after this many frames')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not (args.output_file or args.show):
        parser.error('nothing to do: give --output-file and/or --show')
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import cv2

    from mmseg.apis import inference_model, init_model, keep_freed_memory
    from mmseg.visualization import SegLocalVisualizer

    source = int(args.video) if args.video.isdigit() else args.video
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise FileNotFoundError(f'cannot open video {args.video}')
    from mmseg.apis.model_zoo import looks_like_model_name, resolve_model
    if looks_like_model_name(args.config):
        args.config, args.checkpoint = resolve_model(args.config,
                                                     args.checkpoint)
    elif args.checkpoint is None:
        raise ConfigError(f'{args.config}: a config needs a CHECKPOINT '
                          'argument (only model names bring their own)')
    cfg = load_config(args.config, args.cfg_options)
    with attach_config_to_errors(cfg):
        model = init_model(cfg, args.checkpoint, args.device)
    if args.device == 'cpu':
        keep_freed_memory()
    visualizer = SegLocalVisualizer(
        name='video-demo',
        alpha=args.opacity,
        **{k: v for k, v in model.dataset_meta.items()
           if k in ('classes', 'palette')})
    writer = None
    frames = 0
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            result = inference_model(model, frame)
            drawing = visualizer.draw_sem_seg(
                frame[..., ::-1].copy(), result.pred_sem_seg.data,
                with_labels=False)[..., ::-1]
            if args.output_file:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS) or 25
                    height, width = drawing.shape[:2]
                    writer = cv2.VideoWriter(
                        args.output_file,
                        cv2.VideoWriter_fourcc(*args.output_fourcc), fps,
                        (width, height))
                writer.write(drawing)
            if args.show:
                cv2.imshow('SenFormer', drawing)
                if cv2.waitKey(1) & 0xFF in (ord('q'), 27):
                    break
            frames += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if args.show:
            cv2.destroyAllWindows()
    print(f'processed {frames} frames' +
          (f' -> {args.output_file}' if args.output_file else ''))


if __name__ == '__main__':
    sys.exit(run(main))
