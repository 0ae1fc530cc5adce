"""Print the environment, for bug reports (as MMSegmentation's).

    python tools/misc/collect_env.py

Python, CUDA and compilers, PyTorch (and its build), OpenCV, MMEngine, MMCV
and this code's version (with its git commit).
"""
import argparse
import sys

from mmseg.cli import add_debug_argument, run


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Print the environment, for bug reports')
    add_debug_argument(parser)
    parser.parse_args(argv)
    from mmseg.utils.collect_env import collect_env
    for name, value in collect_env().items():
        print(f'{name}: {value}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
