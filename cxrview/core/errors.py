"""Typed loading errors whose messages a radiologist can act on.

Every error carries the file path and a one-line reason; ``str(err)`` is
"<path>: <reason>" so the CLI and the GUI can show it as is.
"""

from __future__ import annotations

from pathlib import Path


class ImageLoadError(Exception):
    """Base class: the file could not be turned into an image."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # The (path, reason) constructor needs this to cross process boundaries (pickling).
        return (type(self), (self.path, self.reason))


class FileMissingError(ImageLoadError):
    """The path does not exist or cannot be read."""


class NotAnImageError(ImageLoadError):
    """The file is not a format we read (or not an image at all)."""


class UnsupportedTransferSyntaxError(ImageLoadError):
    """A DICOM file whose compression no installed decoder handles."""


class TruncatedFileError(ImageLoadError):
    """The file ends before its pixel data does."""


class ImageTooLargeError(ImageLoadError):
    """More pixels than the decompression-bomb limit allows."""


class CorruptImageError(ImageLoadError):
    """The file claims to be an image but its content is inconsistent."""
