"""Build small synthetic DICOM files for tests (pydicom writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def make_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
               bits_stored: int | None = None, signed: bool = False, frames: int = 1,
               **elements: Any) -> Path:
    """Write an uncompressed DICOM; extra keyword elements are set on the dataset as given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName = "Test^Phantom"
    rgb = (pixels.ndim == 3 and frames == 1) or pixels.ndim == 4
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def phantom(shape: tuple[int, int] = (64, 80), *, dtype: Any = np.uint16, top: int = 4000) -> np.ndarray:
    """A horizontal ramp plus a bright 'spine' column: every row differs, values span [0, top]."""
    h, w = shape
    ramp = np.tile(np.linspace(0, top * 0.8, w), (h, 1))
    ramp[:, w // 2 - 3:w // 2 + 3] = top
    ramp += np.linspace(0, top * 0.05, h)[:, None]
    return np.clip(np.rint(ramp), 0, top).astype(dtype)
