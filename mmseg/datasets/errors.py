"""Exceptions raised for bad dataset input.

Each message names the culprit (path, file, key) so that a wrong layout or a
broken file is found without a debugger.
"""
from mmseg.utils.errors import SenFormerError


class DatasetError(SenFormerError, ValueError):
    """The dataset's files or settings are inconsistent: empty dataset,
    unpaired images and labels, unreadable file, size mismatch, label
    values outside the classes."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A path the dataset needs (data root, folder, split file, image or
    label file) does not exist."""
