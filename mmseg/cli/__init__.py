"""Command-line support for ``tools/`` and ``demo/``.

Three modules, one concern each:

* :mod:`~mmseg.cli.config_loading`: :func:`load_config` reads a config and
  applies ``--cfg-options`` (:func:`check_cfg_options`), raising
  :class:`ConfigError` that names the file, line or key at fault;
* :mod:`~mmseg.cli.explanation`: :func:`explain` turns an exception into
  one message, an exit status and whether it is known bad input;
* :mod:`~mmseg.cli.entry_point`: :func:`run` runs a tool's ``main(argv)``,
  prints ``error: <message>``, writes the traceback to the run's log and
  returns the exit status; :func:`add_debug_argument` adds ``--debug``.

The config travels explicitly; no module keeps it. ``load_config`` returns
it, and the code that builds from it attaches it to whatever it raises::

    def main(argv=None):
        args = parse_args(argv)
        cfg = load_config(args.config, args.cfg_options)
        with attach_config_to_errors(cfg):
            SegRunner.from_cfg(cfg).train()

    if __name__ == '__main__':
        sys.exit(run(main))

``run`` hands :func:`explain` the config the exception carries, so an
unknown ``type`` or a misspelt argument is named by its config key
(``model.backbone.dpeth``); library code that loads a config itself (the
``Inferencer``) attaches it the same way.
"""
from .config_loading import (RUNNER_DEFAULTS, RUNNER_KEYS, ConfigError,
                             check_cfg_options, load_config)
from .entry_point import EXIT_FAILURE, EXIT_USAGE, add_debug_argument, run
from .explanation import (Explanation, attach_config_to_errors,
                      config_attached_to, explain)

__all__ = [
    'ConfigError', 'EXIT_FAILURE', 'EXIT_USAGE', 'Explanation',
    'RUNNER_DEFAULTS', 'RUNNER_KEYS', 'add_debug_argument',
    'attach_config_to_errors', 'check_cfg_options', 'config_attached_to',
    'explain', 'load_config', 'run'
]
