"""Measure the speed and memory of a model: GFLOP, seconds, the fraction of
the machine's matrix-multiply rate, images/s and peak memory.

    python tools/benchmark.py CONFIG [CHECKPOINT] [--shape H W] [--batch N]
        [--mode inference|train] [--repeat K] [--amp] [--device cpu|cuda]
        [--compile [--compile-mode M] [--compile-backend B] [--freeze]]
        [--skip-flops] [--json FILE] [--debug]

``inference`` times ``encode_decode`` (logits at input size) without
gradients; ``train`` times one forward + backward of the training losses
(no optimizer step); its FLOPs are the model's forward and backward, not
counting what is redone in backward to save memory (the projections of
``recompute_levels``, the scores of the CPU key-block attention). The
matrix-multiply rate is measured in the same run
(a 2048 x 2048 float32 matmul, or the AMP dtype with ``--amp``). Peak memory
is the process's peak resident memory on CPU and the peak allocated CUDA
memory on GPU. On CPU, inference keeps freed memory in the heap as
``tools/test.py`` and the demos do (``mmseg.apis.keep_freed_memory``; set
``MMSEG_DEFAULT_MALLOC=1`` to measure glibc's default instead).

``--compile`` times the same step through ``torch.compile``: in inference
``model.encode_decode``, in training the forward with its losses (the
backward then runs the graphs AOTAutograd compiled for it; the optimizer is
not part of the step either way). The first call, which traces and compiles,
is reported apart (``compile_seconds``) and is not one of the timed runs; the
FLOPs are counted on the eager model. Inference also compares the compiled
logits with the eager model's on the same input (largest absolute difference
and the share of pixels whose arg-max class agrees) and warns below 99.9 %.
Peak memory then includes what compiling took in this process.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
from mmengine.config import DictAction

from mmseg.apis.export import MIN_ARGMAX_AGREEMENT
from mmseg.cli import (add_debug_argument, attach_config_to_errors,
                       load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark a SenFormer config (speed, FLOPs, memory).')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='optional checkpoint to load')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input size (default: the config\'s crop size)')
    parser.add_argument('--batch', type=int, default=None,
                        help='batch size (default 1 inference, 2 train)')
    parser.add_argument('--mode', choices=['inference', 'train'],
                        default='inference')
    parser.add_argument('--repeat', type=int, default=5,
                        help='timed runs (the median is reported)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--amp', action='store_true',
                        help='autocast: bfloat16 on CPU, float16 on CUDA')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda[:N] (default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (default: torch\'s default)')
    parser.add_argument(
        '--compile', action='store_true',
        help='time the step through torch.compile (inference: encode_decode; '
        'train: the forward and its losses)')
    parser.add_argument(
        '--compile-mode', choices=COMPILE_MODES, default=None,
        help='torch.compile mode (default: default)')
    parser.add_argument(
        '--compile-backend', default=None,
        help='torch.compile backend (default: inductor; eager or aot_eager '
        'only trace, to check for graph breaks without generating code)')
    parser.add_argument(
        '--freeze', action='store_true',
        help='inference with inductor: fold the weights into the compiled '
        'graph as constants (torch._inductor.config.freezing)')
    parser.add_argument(
        '--skip-flops', action='store_true',
        help='do not count FLOPs (an extra untimed step; gflop and '
        'matmul_fraction are then null)')
    parser.add_argument('--json', help='also write the figures to this file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='config overrides, as in tools/train.py')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_compile_arguments(parser, args)
    return args


COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune',
                 'max-autotune-no-cudagraphs')


def check_compile_arguments(parser, args) -> None:
    """Refuse compile options that would be silently ignored."""
    given = [name for name, value in (
        ('--compile-mode', args.compile_mode),
        ('--compile-backend', args.compile_backend),
        ('--freeze', args.freeze)) if value]
    if given and not args.compile:
        parser.error(f'{", ".join(given)}: only used with --compile')
    if not args.compile:
        return
    args.compile_mode = args.compile_mode or 'default'
    args.compile_backend = args.compile_backend or 'inductor'
    import torch._dynamo
    if args.compile_backend not in torch._dynamo.list_backends(
            exclude_tags=()):
        # the usual ones; the full list also has testing-only backends
        usual = sorted(set(torch._dynamo.list_backends()) |
                       {'eager', 'aot_eager'})
        parser.error(f'unknown --compile-backend {args.compile_backend!r} '
                     f'(torch.compile has {", ".join(usual)}, ...)')
    if args.freeze and args.mode != 'inference':
        parser.error('--freeze is for --mode inference only (frozen weights '
                     'get no gradients)')
    if args.freeze and args.compile_backend != 'inductor':
        parser.error('--freeze needs --compile-backend inductor')


def compare_predictions(eager: torch.Tensor,
                        compiled: torch.Tensor) -> dict:
    """How far compiled logits (N x K x H x W) are from the eager ones:
    the largest absolute difference and the share of pixels whose arg-max
    class is the same."""
    eager, compiled = eager.float(), compiled.float()
    agreement = (eager.argmax(1) == compiled.argmax(1)).float().mean()
    return dict(
        pixel_agreement=float(agreement),
        logits_max_abs_diff=float((eager - compiled).abs().max()))


def agreement_warning(pixel_agreement: float) -> str:
    """The warning to print when compile changes too many predictions
    (empty when it does not)."""
    if pixel_agreement >= MIN_ARGMAX_AGREEMENT:
        return ''
    return (f'warning: the compiled model predicts another class than the '
            f'eager model for {100 * (1 - pixel_agreement):.3f} % of the '
            f'pixels (agreement {100 * pixel_agreement:.3f} % < '
            f'{100 * MIN_ARGMAX_AGREEMENT:g} %): do not use this compile '
            'setting for evaluation')


def compile_function(fn, args):
    """``torch.compile(fn)`` with the tool's options; returns the compiled
    function and a callable giving the graphs and graph breaks dynamo
    has made since."""
    import torch._dynamo
    import torch._inductor.config
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    if args.freeze:
        torch._inductor.config.freezing = True
    compiled = torch.compile(
        fn, backend=args.compile_backend, mode=args.compile_mode)

    def graph_counts():
        return dict(
            compile_graphs=int(counters['stats']['unique_graphs']),
            compile_graph_breaks=int(sum(counters['graph_break'].values())))

    return compiled, graph_counts


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_rate(device: torch.device, dtype: torch.dtype,
                repeat: int = 5) -> float:
    """FLOP/s of a 2048 x 2048 matrix product on ``device``."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    times = _timed(lambda: a @ b, device, repeat, warmup=2)
    return 2 * 2048**3 / statistics.median(times)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device)
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(args, device):
    from mmseg.apis import init_model
    cfg = load_config(args.config, args.cfg_options)
    with attach_config_to_errors(cfg):
        model = init_model(cfg, args.checkpoint, device=str(device))
    crop = cfg.get('crop_size') or cfg.model.data_preprocessor.get('size')
    return model, tuple(args.shape or crop or (512, 512))


def make_batch(model, shape, batch, device):
    from mmengine.structures import PixelData

    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, *shape, generator=g).to(device)
    labels = torch.randint(0, model.num_classes, (batch, 1, *shape),
                           generator=g).to(device)
    samples = [
        SegDataSample(
            gt_sem_seg=PixelData(data=labels[i]),
            metainfo=dict(
                img_shape=shape, ori_shape=shape, batch_input_shape=shape))
        for i in range(batch)
    ]
    return inputs, samples


def main(argv=None):
    args = parse_args(argv)
    from mmseg.apis import keep_freed_memory
    from mmseg.models.utils.flops import count_flops
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    amp_dtype = (torch.float16 if device.type == 'cuda' else
                 torch.bfloat16) if args.amp else None
    batch = args.batch or (2 if args.mode == 'train' else 1)

    model, shape = build(args, device)
    if args.compile and args.checkpoint is None:
        from mmseg.apis.export import distinct_class_queries
        # random weights score the classes alike: the agreement of the
        # compiled prediction would count ties
        distinct_class_queries(model)
    inputs, samples = make_batch(model, shape, batch, device)
    metas = [s.metainfo for s in samples]

    def autocast():
        return torch.autocast(
            device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    if args.mode == 'inference':
        model.eval()
        if device.type == 'cpu':
            # as tools/test.py and the demos do on CPU
            keep_freed_memory()

        def forward():
            with autocast():
                return model.encode_decode(inputs, metas)

        def eager_step():
            with torch.no_grad():
                return forward()
    else:
        model.train()

        def forward():
            with autocast():
                losses = model.loss(inputs, samples)
            return sum(v for k, v in losses.items() if 'loss' in k)

        def eager_step():
            forward().backward()
            model.zero_grad(set_to_none=True)

    compiled_figures = {}
    step = eager_step
    if args.compile:
        compiled_forward, graph_counts = compile_function(forward, args)
        if args.mode == 'inference':
            eager_logits = eager_step()

            def compiled_step():
                with torch.no_grad():
                    return compiled_forward()
        else:

            def compiled_step():
                compiled_forward().backward()
                model.zero_grad(set_to_none=True)

        step = compiled_step

        _sync(device)
        start = time.perf_counter()
        first = step()
        _sync(device)
        compiled_figures = dict(
            compile_backend=args.compile_backend,
            compile_mode=args.compile_mode,
            freeze=args.freeze,
            compile_seconds=round(time.perf_counter() - start, 2))
        compiled_figures.update(graph_counts())
        if args.mode == 'inference':
            compiled_figures.update(compare_predictions(eager_logits, first))
            del eager_logits
        del first

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = _timed(step, device, args.repeat, args.warmup)
    seconds = statistics.median(times)
    # read before counting FLOPs: the counter's hooks hold extra tensors
    peak_memory = peak_memory_bytes(device)
    # FLOPs are counted on a gradient-enabled forward of the eager model:
    # the counter's module tracker needs autograd nodes
    if args.skip_flops:
        flops = None
    elif args.mode == 'inference':
        flops, _ = count_flops(lambda: model.encode_decode(inputs, metas))
        model.zero_grad(set_to_none=True)
    else:
        # on the reference operations: work redone in backward to save
        # memory is not credited
        flops, _ = count_flops(eager_step)
    rate = matmul_rate(device, amp_dtype or torch.float32)

    result = dict(
        config=args.config,
        mode=args.mode,
        device=str(device) if device.type == 'cpu' else
        torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(),
        amp=str(amp_dtype).replace('torch.', '') if amp_dtype else None,
        shape=list(shape),
        batch=batch,
        gflop=None if flops is None else round(flops / 1e9, 1),
        seconds_median=round(seconds, 4),
        seconds_all=[round(t, 4) for t in times],
        matmul_gflops=round(rate / 1e9, 1),
        matmul_fraction=None if flops is None else round(
            flops / seconds / rate, 3),
        images_per_second=round(batch / seconds, 3),
        peak_memory_gb=round(peak_memory / 1e9, 2),
        **compiled_figures,
    )
    width = max(map(len, result))
    for key, value in result.items():
        print(f'{key:<{width}}  {value}')
    warning = agreement_warning(result.get('pixel_agreement', 1.0))
    if warning:
        print(warning, file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    sys.exit(run(main))
