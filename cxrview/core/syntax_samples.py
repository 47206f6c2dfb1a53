"""Tiny DICOM files in every transfer syntax the loader supports, and a chest phantom, made on the spot.

Used by ``cxrview --self-test`` (a bundle or an installation proves its decoders work) and
by the tests that prove every syntax decodes without GPL code (ADR 0012). Nothing here is
test data: each file is encoded from :func:`sample_pixels` with the permissively licensed
encoders we already depend on (imagecodecs for JPEG / JPEG-LS / JPEG 2000, pydicom for
deflate and RLE), so the expected pixels are known exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K_LOSSY = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"


@dataclass(frozen=True)
class SampleSyntax:
    uid: str
    name: str
    bits: int  # bits stored of the sample
    max_error: int  # 0: the decoded pixels must equal the source exactly
    encode: Callable[[np.ndarray], bytes] | None  # None: native (pydicom writes it)


def _jpeg8(level: int | None = None, *, bits: int | None = None, lossless: bool | None = None,
           predictor: int | None = None) -> Callable[[np.ndarray], bytes]:
    def encode(pixels: np.ndarray) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpeg8_encode(pixels, level=level, bitspersample=bits, lossless=lossless,
                                              predictor=predictor))
    return encode


def _jpegls(level: int) -> Callable[[np.ndarray], bytes]:
    def encode(pixels: np.ndarray) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegls_encode(pixels, level=level))
    return encode


def _j2k(*, reversible: bool) -> Callable[[np.ndarray], bytes]:
    def encode(pixels: np.ndarray) -> bytes:
        import imagecodecs

        level = 0 if reversible else 60  # PSNR target for the irreversible (9/7) path
        return bytes(imagecodecs.jpeg2k_encode(pixels, level=level, codecformat="J2K",
                                               reversible=reversible, bitspersample=12))
    return encode


def _htj2k(pixels: np.ndarray) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.htj2k_encode(pixels))


SYNTAXES: tuple[SampleSyntax, ...] = (
    SampleSyntax(EXPLICIT_LE, "Explicit VR Little Endian", 12, 0, None),
    SampleSyntax(IMPLICIT_LE, "Implicit VR Little Endian", 12, 0, None),
    SampleSyntax(DEFLATED_LE, "Deflated Explicit VR Little Endian", 12, 0, None),
    SampleSyntax(RLE, "RLE Lossless", 12, 0, None),
    SampleSyntax(JPEG_BASELINE, "JPEG Baseline (8-bit)", 8, 8, _jpeg8(level=95)),
    SampleSyntax(JPEG_EXTENDED, "JPEG Extended (12-bit)", 12, 96, _jpeg8(level=95, bits=12)),
    SampleSyntax(JPEG_LOSSLESS, "JPEG Lossless", 12, 0,
                 _jpeg8(lossless=True, predictor=6, bits=12)),
    SampleSyntax(JPEG_LOSSLESS_SV1, "JPEG Lossless SV1", 12, 0,
                 _jpeg8(lossless=True, predictor=1, bits=12)),
    SampleSyntax(JPEG_LS_LOSSLESS, "JPEG-LS Lossless", 12, 0, _jpegls(0)),
    SampleSyntax(JPEG_LS_NEAR, "JPEG-LS Near-lossless", 12, 2, _jpegls(2)),
    SampleSyntax(J2K_LOSSLESS, "JPEG 2000 Lossless", 12, 0, _j2k(reversible=True)),
    SampleSyntax(J2K_LOSSY, "JPEG 2000 (lossy)", 12, 96, _j2k(reversible=False)),
    SampleSyntax(HTJ2K_LOSSLESS, "HTJ2K Lossless", 12, 0, _htj2k),
)


def sample_pixels(bits: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A smooth ramp with a bright band and a dark disc: structure every codec must keep."""
    h, w = shape
    top = (1 << bits) - 1
    y, x = np.mgrid[0:h, 0:w]
    image = 0.15 * top + 0.6 * top * (x / (w - 1)) + 0.1 * top * (y / (h - 1))
    image[:, w // 2 - 3: w // 2 + 3] = 0.95 * top
    image[(y - h / 2) ** 2 + (x - w / 4) ** 2 < (h / 5) ** 2] = 0.05 * top
    clipped: np.ndarray = np.clip(np.rint(image), 0, top)
    return clipped.astype(np.uint8 if bits <= 8 else np.uint16)


def write_sample(folder: Path, syntax: SampleSyntax) -> tuple[Path, np.ndarray]:
    """Write ``syntax``'s sample into ``folder``; (its path, the pixels it must decode to)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, SecondaryCaptureImageStorage, generate_uid

    pixels = sample_pixels(syntax.bits)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(EXPLICIT_LE if syntax.uid == RLE else syntax.uid)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "SelfTest^Sample"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = syntax.bits
    ds.HighBit = syntax.bits - 1
    ds.PixelRepresentation = 0
    if syntax.encode is None:
        ds.PixelData = pixels.tobytes()
        if syntax.uid == RLE:
            ds.compress(RLE, encoding_plugin="pydicom")
    else:
        ds.PixelData = encapsulate([syntax.encode(pixels)])
        ds["PixelData"].VR = "OB"
        if syntax.max_error:
            ds.LossyImageCompression = "01"
    path = folder / f"{syntax.uid}.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax.uid == IMPLICIT_LE)
    return path, pixels


def decode_error(decoded: np.ndarray, expected: np.ndarray) -> int | None:
    """Largest absolute difference, or None when the shapes differ."""
    if decoded.shape != expected.shape:
        return None
    return int(np.abs(decoded.astype(np.int64) - expected.astype(np.int64)).max())


def chest_phantom(size: int = 512) -> np.ndarray:
    """A synthetic frontal chest film (8-bit grey, MONOCHROME2 sense: bone and soft tissue bright):
    body, two dark lungs with ribs, mediastinum and heart, spine, diaphragm. Not anatomy to
    diagnose on: enough for every stage of a prediction to run (``cxrview --self-test``)."""
    import cv2

    s = size / 512
    canvas = np.zeros((size, size), np.float32)

    def ellipse(centre: tuple[float, float], axes: tuple[float, float], value: float,
                angle: float = 0.0) -> None:
        cv2.ellipse(canvas, (round(centre[0] * s), round(centre[1] * s)),
                    (round(axes[0] * s), round(axes[1] * s)), angle, 0, 360, value, thickness=-1)

    ellipse((256, 300), (230, 250), 0.62)  # body
    ellipse((168, 250), (78, 165), 0.18, angle=-4)  # patient's right lung (image left)
    ellipse((344, 250), (78, 165), 0.18, angle=4)  # patient's left lung
    for k in range(9):  # ribs: bright arcs across both lungs
        y = (120 + 34 * k) * s
        for cx, sign in ((168, 1), (344, -1)):
            cv2.ellipse(canvas, (round(cx * s), round(y)), (round(92 * s), round(26 * s)), 8 * sign, 180, 360,
                        0.42, thickness=max(1, round(7 * s)))
    ellipse((280, 350), (82, 70), 0.66)  # heart, towards the patient's left
    spine = ((round(240 * s), round(40 * s)), (round(272 * s), size - 1))
    cv2.rectangle(canvas, *spine, 0.8, thickness=-1)
    ellipse((256, 470), (220, 60), 0.7)  # diaphragm and abdomen
    blurred = np.asarray(cv2.GaussianBlur(canvas, (0, 0), 3 * s), np.float32)
    noise = np.random.default_rng(16).normal(0, 0.01, blurred.shape).astype(np.float32)
    film: np.ndarray = np.clip((blurred + noise) * 255, 0, 255).astype(np.uint8)
    return film
