"""Qt-free core: image loading, the DICOM display pipeline, presets and (later) annotations.

Nothing under ``cxrview.core`` may import Qt or torch (tests enforce it).
"""

from __future__ import annotations

from cxrview.core.display import model_input, model_input_hash, model_view, render_display
from cxrview.core.errors import (
    CorruptImageError,
    FileMissingError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from cxrview.core.image import (
    MetadataItem,
    Spacing,
    SpacingSource,
    VoiFunction,
    Window,
    XrayImage,
)
from cxrview.core.loader import DEFAULT_MAX_PIXELS, find_images, load_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CorruptImageError",
    "FileMissingError",
    "ImageLoadError",
    "ImageTooLargeError",
    "MetadataItem",
    "NotAnImageError",
    "Spacing",
    "SpacingSource",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
    "VoiFunction",
    "Window",
    "XrayImage",
    "find_images",
    "load_image",
    "model_input",
    "model_input_hash",
    "model_view",
    "render_display",
]
