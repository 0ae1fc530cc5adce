"""Convert an official Swin Transformer release to the SenFormer layout.

    python tools/model_converters/swin2mmseg.py \
        swin_tiny_patch4_window7_224.pth pretrain/swin_tiny_patch4_window7_224.pth

Renames ``layers.*`` to ``stages.*``, ``attn.*`` to ``attn.w_msa.*``,
``mlp.fc1/fc2`` to ``ffn.layers.0.0/ffn.layers.1``, ``patch_embed.proj`` to
``patch_embed.projection``, reorders patch merging to ``nn.Unfold`` order and
drops the classifier.
"""
import argparse
import sys

from mmseg.cli import add_debug_argument, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official Swin checkpoint to the SenFormer '
        '(MMSegmentation) key layout.')
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output path')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmseg.engine import atomic_save, read_checkpoint
    from mmseg.models.utils.ckpt_convert import (is_official_swin,
                                                 swin_official_to_mmseg)
    checkpoint = read_checkpoint(args.src)
    state = checkpoint.get('model', checkpoint.get('state_dict', checkpoint))
    if not is_official_swin(state):
        sys.exit(f'error: {args.src} is not an official Swin checkpoint '
                 '(no "layers.*" keys); it may already be converted')
    converted = swin_official_to_mmseg(state)
    atomic_save(dict(state_dict=converted), args.dst)
    print(f'converted {len(converted)} tensors -> {args.dst}')


if __name__ == '__main__':
    sys.exit(run(main))
