"""The base class of this project's exceptions."""


class SenFormerError(Exception):
    """Raised for a problem the user can fix (bad input, a broken file, a
    busy work directory, ...): its message names the culprit, and the
    command-line tools print it as one line, ``error: <message>``.

    Each subclass also derives from the built-in exception of its kind
    (``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so code that
    catches those keeps working.
    """
