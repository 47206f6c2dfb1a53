"""Typed loading errors whose messages a radiologist can act on.

Every error carries the file path and a one-line reason; ``str(err)`` is
"<path>: <reason>" so the CLI and the GUI can show it as is.
"""

from __future__ import annotations

from pathlib import Path

MAX_REASON_CHARS = 300  # a library's message can be a page long; the user needs its first line


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line (any run of whitespace, newlines included, becomes one space),
    shortened to ``limit`` characters: every error a user meets is one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def printable_path(path: str | Path) -> str:
    """A path as one line: control characters (a newline in a file name) escaped, never raw."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class ImageLoadError(Exception):
    """Base class: the file could not be turned into an image."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = one_line(reason)
        super().__init__(f"{printable_path(self.path)}: {self.reason}")

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


class DecodeTimeoutError(ImageLoadError):
    """Decoding took longer than the time limit (a damaged or hostile file)."""
