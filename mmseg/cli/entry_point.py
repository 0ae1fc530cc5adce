"""Running a tool's ``main`` so that failures end in one clear line.

A tool's ``main(argv)`` runs under :func:`run`::

    if __name__ == '__main__':
        sys.exit(run(main))

Known bad input then ends with one line on stderr that names the culprit,
``error: <what is wrong>``, and a non-zero exit status: :data:`EXIT_USAGE`
(2) for a bad config or command line, :data:`EXIT_FAILURE` (1) otherwise.
The traceback goes to the run's log file (when a Runner has opened one)
and, with ``--debug`` (or ``MMSEG_DEBUG=1``), to stderr too. Unexpected
exceptions (bugs) also end with one line, plus a second one saying where
the traceback is. The message comes from
:func:`mmseg.cli.explanation.explain`, given the config the exception
carries.
"""
import argparse
import logging
import os
import sys
import traceback
from typing import Callable, List, Optional

from .explanation import (EXIT_FAILURE, EXIT_USAGE, config_attached_to,
                          explain)

__all__ = ['EXIT_FAILURE', 'EXIT_USAGE', 'add_debug_argument', 'run']


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (read by :func:`run`) to a tool's parser."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help='on error, print the full traceback instead of one line')


def _log_files() -> List[logging.FileHandler]:
    """File handlers of the current mmengine logger, if a run made one."""
    from mmengine.logging import MMLogger
    if not MMLogger._instance_dict:  # no logger yet: do not create one
        return []
    logger = MMLogger.get_current_instance()
    return [h for h in logger.handlers if isinstance(h, logging.FileHandler)]


def _write_to_log(handlers: List[logging.FileHandler], text: str) -> None:
    for handler in handlers:
        try:
            handler.acquire()
            handler.stream.write(text)
            handler.flush()
        except (OSError, ValueError):  # closed or full: nothing to do
            pass
        finally:
            handler.release()


def run(main: Callable[[Optional[List[str]]], object],
        argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)`` and turn exceptions into an exit status.

    Args:
        main: the tool's entry point; its return value is the exit status
            when it is an int, else 0.
        argv: command line without the program name (``sys.argv[1:]`` when
            None); ``--debug`` in it prints tracebacks.

    Returns:
        0 on success, :data:`EXIT_USAGE` for a bad config or command line,
        :data:`EXIT_FAILURE` otherwise. ``SystemExit`` (argparse errors,
        ``sys.exit`` in the tool) passes through.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = '--debug' in args or os.environ.get('MMSEG_DEBUG', '') not in (
        '', '0')
    try:
        result = main(argv)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as exc:
        # the config comes with the exception (attach_config_to_errors)
        explanation = explain(exc, config_attached_to(exc))
        details = traceback.format_exc()
        handlers = _log_files()
        _write_to_log(handlers, f'error: {explanation.message}\n{details}')
        if debug:
            sys.stderr.write(details)
        rank = os.environ.get('RANK')
        world = os.environ.get('WORLD_SIZE', '1')
        prefix = f'error (rank {rank}): ' if rank is not None and \
            world != '1' else 'error: '
        print(prefix + explanation.message, file=sys.stderr)
        if not explanation.expected and not debug:
            where = ', '.join(h.baseFilename for h in handlers)
            print(('the traceback is in ' + where + '; ' if where else '') +
                  'run again with --debug to see it here', file=sys.stderr)
        sys.stderr.flush()
        return explanation.exit_code
    return result if isinstance(result, int) and \
        not isinstance(result, bool) else 0
