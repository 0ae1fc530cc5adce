"""Count the FLOPs and parameters of a segmentor.

    python tools/get_flops.py CONFIG [--shape H W] [--cfg-options ...]

FLOPs are those of one inference forward (``encode_decode``: logits at the
input size) of a ``1 x 3 x H x W`` input, counted by
:func:`mmseg.models.utils.flops.count_flops`, which also counts the fused attention
kernels (``scaled_dot_product_attention``) that plain FLOP counters miss.
A multiply-add counts as 2 FLOPs; the published tables (MMSegmentation's
``get_flops``) count multiply-adds, so ``GMACs`` is the figure to compare
with them. The default shape is the config's crop size. The weights are
random: no checkpoint or pre-trained backbone is read.
"""
import argparse
import sys

from mmengine.config import DictAction

from mmseg.cli import (add_debug_argument, attach_config_to_errors,
                       load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count the FLOPs and parameters of a segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs='+', metavar='SIZE',
        help='input size: H W, or one number for a square '
        '(default: the config\'s crop size, else 512 512)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.shape is not None:
        if len(args.shape) == 1:
            args.shape = args.shape * 2
        if len(args.shape) != 2 or min(args.shape) < 1:
            parser.error(f'--shape takes H W or one positive size, got '
                         f'{" ".join(map(str, args.shape))}')
    return args


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def input_shape(cfg, shape):
    """``(H, W)`` from ``--shape``, else the config's crop size."""
    if shape:
        return tuple(shape)
    crop = cfg.get('crop_size') or \
        cfg.model.get('data_preprocessor', {}).get('size')
    return tuple(crop) if crop else (512, 512)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmseg.apis import init_model
    from mmseg.models.utils.flops import count_flops

    cfg = load_config(args.config, args.cfg_options)
    height, width = input_shape(cfg, args.shape)
    with attach_config_to_errors(cfg):
        model = init_model(cfg, checkpoint=None, device='cpu')

    inputs = torch.randn(1, 3, height, width)
    metas = [dict(img_shape=(height, width), ori_shape=(height, width),
                  pad_shape=(height, width),
                  batch_input_shape=(height, width))]
    # the counter follows the autograd graph, so gradients stay enabled
    flops, _ = count_flops(model.encode_decode, inputs, metas)

    total = count_parameters(model)
    aux = model.auxiliary_head
    aux_params = count_parameters(aux) if aux is not None else 0
    rows = [('config', args.config), ('input shape', f'1x3x{height}x{width}'),
            ('GFLOPs', f'{flops / 1e9:.2f}'),
            ('GMACs', f'{flops / 2e9:.2f}'),
            ('parameters', f'{total / 1e6:.2f} M ({total})')]
    if aux is not None:
        rows.append(('parameters without auxiliary head',
                     f'{(total - aux_params) / 1e6:.2f} M '
                     f'({total - aux_params})'))
    for name in ('backbone', 'neck', 'decode_head', 'auxiliary_head'):
        part = getattr(model, name, None)
        if part is not None:
            rows.append((f'  {name}',
                         f'{count_parameters(part) / 1e6:.2f} M'))
    label_width = max(len(name) for name, _ in rows)
    print('\n'.join(f'{name:<{label_width}}  {value}'
                    for name, value in rows))
    print('FLOPs of encode_decode (the auxiliary head does not run at '
          'inference); compare GMACs with published "FLOPs".')


if __name__ == '__main__':
    sys.exit(run(main))
