"""The errors jhash's data preparation raises: importable without TensorFlow Datasets.

Every message names the file or folder concerned and says how to fix it. Command-line tools print
``error: <message>`` and exit with status 2 for any of :data:`DATA_ERRORS` (a user's input is wrong, not
the code).
"""

from __future__ import annotations


class DatasetError(ValueError):
    """Base class of the data errors raised by jhash builders (bad names, corrupt images, lists, options)."""


class ManualDirError(FileNotFoundError):
    """The manual_dir is missing, empty, or does not hold the expected archive, folder or split."""


class FilenameError(DatasetError):
    """An image name does not match the dataset's naming rule."""


class CorruptImageError(DatasetError):
    """An image cannot be read or decoded (also: a broken symbolic link, a folder named like an image)."""


DATA_ERRORS: tuple[type[Exception], ...] = (DatasetError, ManualDirError)
