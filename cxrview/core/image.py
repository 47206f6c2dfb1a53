"""The typed image object every loader returns.

Pixel values are kept as *stored* (integers where the file has integers) and
the display pipeline (``cxrview.core.display``) maps them to 8-bit through one
lookup table: Modality LUT -> VOI -> MONOCHROME1 inversion, in the order of
DICOM PS3.4 (Grayscale Standard Display pipeline). Keeping stored integers lets
window/level re-render a 4-megapixel radiograph with a single table lookup.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np


class SpacingSource(enum.Enum):
    """Where the pixel spacing came from; radiologists need to know before trusting mm."""

    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"
    ERMF_CORRECTED = "ERMF-corrected"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Spacing:
    """Physical size of one pixel in millimetres, with provenance."""

    row_mm: float
    col_mm: float
    source: SpacingSource

    def __post_init__(self) -> None:
        if not (0 < self.row_mm < math.inf and 0 < self.col_mm < math.inf):
            raise ValueError("spacing must be positive and finite; use None for unknown spacing")


class VoiFunction(enum.Enum):
    """DICOM VOI LUT Function (0028,1056)."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (after Rescale Slope/Intercept)."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"a window needs a finite center and a positive width, "
                             f"got {self.center:g} / {self.width:g}")

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclass(frozen=True)
class LookupTable:
    """A DICOM LUT (Modality or VOI LUT Sequence item): first mapped input value + table."""

    first_mapped: int
    table: np.ndarray
    bits: int
    explanation: str = ""

    def apply(self, values: np.ndarray) -> np.ndarray:
        index = np.clip(values.astype(np.int64) - self.first_mapped, 0, len(self.table) - 1)
        return self.table[index]


@dataclass(frozen=True)
class ModalityTransform:
    """Modality LUT stage: either rescale (slope/intercept) or a LUT sequence."""

    slope: float = 1.0
    intercept: float = 0.0
    lut: LookupTable | None = None

    @property
    def is_identity(self) -> bool:
        return self.lut is None and self.slope == 1.0 and self.intercept == 0.0

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """Map stored values to modality values (float64 for the rescale case)."""
        if self.lut is not None:
            return self.lut.apply(stored).astype(np.float64)
        if self.is_identity:
            return stored.astype(np.float64)
        return stored.astype(np.float64) * self.slope + self.intercept


@dataclass(frozen=True)
class MetadataItem:
    """One row of the metadata panel: a DICOM element or a file property."""

    tag: str  # "(0010,0010)" for DICOM, "" for non-DICOM properties
    name: str
    vr: str
    value: str


@dataclass
class XrayImage:
    """A loaded radiograph: stored pixels, how to display them and what we know about them."""

    path: str
    stored: np.ndarray  # 2-D, as stored in the file (after decoding), grey
    photometric: str  # MONOCHROME1 / MONOCHROME2 (colour input is converted to MONOCHROME2)
    bits_stored: int
    modality_transform: ModalityTransform
    presets: dict[str, Window]
    default_preset: str
    spacing: Spacing | None
    content_hash: str
    format: str  # "DICOM", "PNG", "JPEG", "TIFF"
    transfer_syntax: str | None = None  # UID, None for non-DICOM
    transfer_syntax_name: str | None = None
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    patient_age: str | None = None  # DICOM Age String as stored, e.g. "045Y", "008M"
    presentation_lut_shape: str | None = None  # IDENTITY / INVERSE when the file says
    voi_lut: LookupTable | None = None  # VOI LUT Sequence, used when no window is chosen
    # Header attributes shown beside the image (corner text, study browser, report), by DICOM
    # keyword, as text; for other formats what the file name or its properties tell.
    attributes: dict[str, str] = field(default_factory=dict)
    metadata: list[MetadataItem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # Cached stored-value range: presets, the display LUT and the CLI all need it.
    # (init=False: ``dataclasses.replace`` with new pixels must not copy a stale cache)
    _stored_range: tuple[int, int] | tuple[float, float] | None = field(default=None, init=False,
                                                                        repr=False, compare=False)
    # The default rendering models see (uint8), kept once computed: the cache key hashes it and
    # the prediction then uses it, so a cache miss does not render the film twice.
    _model_view: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stored.ndim != 2:
            raise ValueError(f"stored pixels must be 2-D, got shape {self.stored.shape}")
        if self.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ValueError(f"unexpected photometric interpretation {self.photometric!r}")
        if self.default_preset not in self.presets:
            raise ValueError(f"default preset {self.default_preset!r} not among presets")

    @property
    def width(self) -> int:
        return int(self.stored.shape[1])

    @property
    def height(self) -> int:
        return int(self.stored.shape[0])

    @property
    def is_inverted(self) -> bool:
        """Low values displayed bright: MONOCHROME1, or a Presentation LUT Shape of INVERSE
        (PS3.3 C.11.6: the P-values are inverted). For MONOCHROME1 the standard requires
        INVERSE, which says the same thing again: the image is inverted once, not twice.
        The inversion happens after the VOI."""
        return self.photometric == "MONOCHROME1" or (self.presentation_lut_shape or "").upper() == "INVERSE"

    @property
    def spacing_source(self) -> SpacingSource:
        return self.spacing.source if self.spacing else SpacingSource.UNKNOWN

    def stored_range(self) -> tuple[int, int] | tuple[float, float]:
        """(min, max) of the stored values, computed once (a full pass over the pixels)."""
        if self._stored_range is None:
            lo, hi = self.stored.min(), self.stored.max()
            self._stored_range = (lo.item(), hi.item())
        return self._stored_range

    def modality_range(self) -> tuple[float, float]:
        """(min, max) of the modality values (after Rescale / Modality LUT)."""
        lo, hi = self.stored_range()
        transform = self.modality_transform
        if transform.lut is not None and self.stored.dtype.kind in "iu":
            # The LUT clips its index, so the entries between the ends' indices are all it gives.
            lut = transform.lut
            first = int(np.clip(int(lo) - lut.first_mapped, 0, len(lut.table) - 1))
            last = int(np.clip(int(hi) - lut.first_mapped, 0, len(lut.table) - 1))
            mapped = lut.table[first:last + 1].astype(np.float64)
        else:  # rescale is monotonic: the ends suffice
            mapped = transform.apply(np.array([lo, hi]))
        return float(mapped.min()), float(mapped.max())

    def modality_value_at(self, x: int, y: int) -> float:
        """The modality value (rescaled) at column x, row y, for the status bar."""
        stored = self.stored[y, x]
        return float(self.modality_transform.apply(np.asarray([stored]))[0])

    def distance_mm(self, p0: tuple[float, float], p1: tuple[float, float]) -> float | None:
        """Distance between two (x, y) image points in mm, or None when spacing is unknown."""
        if self.spacing is None:
            return None
        dx = (p1[0] - p0[0]) * self.spacing.col_mm
        dy = (p1[1] - p0[1]) * self.spacing.row_mm
        return float(np.hypot(dx, dy))

