"""Turn a training checkpoint into a file to publish.

    python tools/publish_model.py IN_FILE OUT_FILE

Keeps ``state_dict`` and ``meta`` (config, dataset classes and palette,
iteration) and drops the training state (optimizer, parameter schedulers,
message hub, ...), which only ``--resume`` needs. As MMSegmentation does,
the first 8 hex digits of the file's SHA-256 are added to the name:
``OUT_FILE=work_dirs/senformer_r18_toy.pth`` gives
``work_dirs/senformer_r18_toy-1a2b3c4d.pth``. The file appears complete or
not at all (written beside the target, then renamed).
"""
import argparse
import os
import os.path as osp
import sys

from mmseg.cli import add_debug_argument, run

#: checkpoint entries that are kept; everything else is training state
KEPT_KEYS = ('meta', 'state_dict')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Strip the training state from a checkpoint and add '
        'its SHA-256 prefix to the file name')
    parser.add_argument('in_file', help='checkpoint written by training')
    parser.add_argument(
        'out_file', help='output name; "-<sha256[:8]>" is added before .pth')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not osp.isfile(args.in_file):
        parser.error(f'checkpoint not found: {args.in_file}')
    return args


def strip_training_state(checkpoint: dict, filename: str) -> dict:
    """The checkpoint's ``state_dict`` and ``meta`` only."""
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        # a bare state dict (tensors only) has nothing to strip
        if isinstance(checkpoint, dict) and checkpoint and all(
                hasattr(v, 'shape') for v in checkpoint.values()):
            return dict(state_dict=checkpoint)
        raise ValueError(f'{filename}: no state_dict in this checkpoint '
                         '(is it a model checkpoint?)')
    return {key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}


def publish(in_file: str, out_file: str) -> str:
    """Write the stripped checkpoint; returns the final file name."""
    from mmseg.engine import atomic_save, read_checkpoint
    from mmseg.engine.download_check import sha256_of
    checkpoint = strip_training_state(read_checkpoint(in_file), in_file)
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    # the hash is only known once the file is written: stage it under a
    # hidden name (atomically), then rename it to its final name
    staging = osp.join(osp.dirname(stem), f'.{osp.basename(stem)}.staging')
    atomic_save(checkpoint, staging)
    final = f'{stem}-{sha256_of(staging)[:8]}.pth'
    # the staging file is private (0600); a published file is for others
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o666 & ~umask)
    os.replace(staging, final)
    return final


def main(argv=None):
    args = parse_args(argv)
    final = publish(args.in_file, args.out_file)
    print(f'wrote {final} ({osp.getsize(final) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    sys.exit(run(main))
