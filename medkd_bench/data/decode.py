"""One image file to the 8-bit pixels the model is trained on: 8-bit, 16-bit, float, DICOM.

Medical images rarely come as 8-bit. Radiology exports are 16-bit PNG or TIFF
(often 10-14 significant bits in a 16-bit container), quantitative maps are
32-bit float TIFF, and scanners write DICOM. Pillow's ``convert("L")`` clips a
16-bit image to 255 (an all-white picture) and truncates floats, so those are
scaled here before anything else touches them.

How values become 0-255 (decided once, for every reader of image files):

* **8-bit images** (grey, RGB, palette, with alpha) are converted by Pillow as
  before: their range *is* the display range, and their pixels, hence every
  stored result on 8-bit data, stay exactly as they were.
* **16-bit, 32-bit integer and float PNG/TIFF** are scaled by **the image's own
  range** (its minimum to 0, its maximum to 255, linearly; NaN to the minimum;
  infinities to the ends). Not by bit depth: a 12-bit detector stored in a
  16-bit PNG uses 0-4095 of 0-65535 and would come out almost black, and the
  offset and gain differ between devices and exports. Without DICOM's window
  tags the image's range is the only window the file carries; this is the
  min-max intensity scaling most medical-imaging pipelines apply. What is lost:
  absolute intensities across images (a bright and a dim export of the same
  film look alike), and one hot pixel compresses the rest of the image.
* **DICOM** follows the standard's display pipeline: the modality LUT (Rescale
  Slope and Intercept, or a Modality LUT Sequence: CT becomes Hounsfield
  units), then the first VOI LUT or window (Window Center/Width), whose output
  range is mapped to 0-255, so the window the radiologist's workstation would
  show is the one trained on. Without a VOI LUT or window, the modality
  values' own range is used, as for 16-bit PNG. MONOCHROME1 (higher values
  darker) is inverted so that bright means dense in every image. Colour DICOM
  is read as RGB. Multi-frame files (cine, CT volumes stored as one object)
  are refused: a frame chosen silently is a wrong label waiting to happen.

Multi-page TIFF is refused for the same reason. :data:`DECODER_VERSION` enters
the decoded-split cache key, so pixels decoded by an older rule are decoded
again rather than served from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medkd_bench.errors import MedkdError

#: Bump whenever a file's decoded pixels change: it is part of the decoded-split cache key.
#: 1: Pillow's convert() for every file (16-bit clipped to white, floats truncated); 2: this module.
DECODER_VERSION = 2

#: Suffixes read as DICOM; files with another, numeric or no suffix are recognised by their marker.
DICOM_SUFFIXES = (".dcm", ".dicom")
#: Suffixes read by Pillow.
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Pillow modes with more than 8 bits per sample: scaled by the image's own range.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
DICOM_INSTALL = 'pip install "medkd-bench[dicom]"'


class UnsupportedImage(ValueError):
    """A readable file this benchmark will not train on (multi-frame, no pixels); the message says why."""


def has_dicom_marker(path: Path) -> bool:
    """True when bytes 128-131 are ``DICM``: a DICOM file, whatever it is called.

    PACS exports are often named by UID (``1.2.840.113619...``) or have no
    extension, so a suffix alone would call them stray files.
    """
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: Path) -> bool:
    """A DICOM suffix, or no image suffix and the DICOM marker."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    return suffix not in PILLOW_SUFFIXES and path.is_file() and has_dicom_marker(path)


def is_image_file(path: Path) -> bool:
    """A file this module decodes: an image suffix, or DICOM by suffix or marker."""
    return path.is_file() and (path.suffix.lower() in PILLOW_SUFFIXES or is_dicom(path))


def unit_range(values: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """``values`` mapped linearly to float32 in [0, 1]: ``bounds`` (low, high) or the finite range.

    NaN counts as the low end, +/-inf as the ends; a constant image is all 0.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if bounds is None:
        if not finite.any():
            return np.zeros(v.shape, dtype=np.float32)
        lo, hi = float(v[finite].min()), float(v[finite].max())
    else:
        lo, hi = float(bounds[0]), float(bounds[1])
    v = np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo)
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.float32)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _pydicom(path: Path) -> Any:
    """pydicom, or a one-line error naming the file and the extra to install."""
    try:
        import pydicom
    except ImportError:
        raise MedkdError(f"{path}: a DICOM file; reading DICOM needs pydicom: {DICOM_INSTALL}") from None
    return pydicom


def _voi_bounds(ds: Any) -> tuple[float, float] | None:
    """The output range of the VOI transform pydicom's ``apply_voi_lut`` picks, or None without one.

    The range, not the windowed image's own min and max: a window wider than
    the data must stay grey, as on the workstation.
    """
    from pydicom.pixels import apply_voi, apply_windowing

    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
            out = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)  # the LUT itself
            return float(out.min()), float(out.max())
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        with np.errstate(over="ignore"):  # SIGMOID at the probe's extremes
            out = apply_windowing(np.array([-1e30, 1e30]), ds)
        return float(out.min()), float(out.max())
    return None


def read_dicom(path: Path) -> np.ndarray:
    """One DICOM image as float32 (H, W) in [0, 1] (grey) or uint8 (H, W, 3) (colour).

    Grey: modality LUT, then the first VOI LUT or window (its output range to
    [0, 1]) or else the image's own range, then MONOCHROME1 inverted.
    """
    pydicom = _pydicom(path)
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise UnsupportedImage(f"multi-frame DICOM ({frames} frames): one 2-D image per file is read; "
                               "save the frame to train on as a file of its own")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnsupportedImage("DICOM file without pixel data (a report or a structured document?)")
    try:
        pixels = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
        if pixels.ndim == 3:  # colour: RGB (pydicom converts YBR), scaled by its bit depth
            if pixels.dtype == np.uint8:
                return pixels
            top = 2 ** int(ds.get("BitsStored", 16)) - 1 if photometric != "PALETTE COLOR" else 65535
            return np.rint(unit_range(pixels, (0, top)) * 255).astype(np.uint8)
        values = apply_modality_lut(pixels, ds)
        bounds = _voi_bounds(ds)
        if bounds is not None:
            values = apply_voi_lut(values, ds, index=0)
        unit = unit_range(values, bounds)
        return 1.0 - unit if photometric == "MONOCHROME1" else unit
    except (UnsupportedImage, MedkdError):
        raise
    except Exception as exc:  # compressed pixel data without its decoder, bad tags: say pydicom's reason
        reason = " ".join(str(exc).split())  # pydicom's reasons span lines; a bad file is one line
        raise UnsupportedImage(f"DICOM pixel data not decoded ({type(exc).__name__}: {reason})") from exc


def dicom_is_grey(path: Path) -> bool:
    """True for a one-sample (MONOCHROME) DICOM; colour only when its planes differ."""
    pydicom = _pydicom(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if int(ds.get("SamplesPerPixel", 1)) == 1 and str(ds.get("PhotometricInterpretation", "")).startswith("MONO"):
        return True
    rgb = read_dicom(path)
    return bool(rgb.ndim == 2 or ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()))


def _refuse_stacks(path: Path, im: Any) -> None:
    """A multi-page TIFF is a stack, not an image; other formats' extra frames (a JPEG's MPO preview) are not."""
    frames = getattr(im, "n_frames", 1) if im.format == "TIFF" else 1
    if frames > 1:
        raise UnsupportedImage(f"multi-page TIFF ({frames} pages): one 2-D image per file is read; "
                               "save the page to train on as a file of its own")


def _from_unit(unit: np.ndarray, size: int, mode: str) -> np.ndarray:
    """A [0, 1] float plane resized (bilinear, antialiased, before rounding) to uint8 ``mode``."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(unit, dtype=np.float32))  # mode 'F'
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    grey = np.rint(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)


def _from_8bit(im: Any, size: int, mode: str) -> np.ndarray:
    from PIL import Image

    im = im.convert(mode)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One file as a ``size`` x ``size`` uint8 array in ``mode`` ('L' grey or 'RGB').

    8-bit files go through Pillow exactly as before (``draft`` lets the JPEG
    decoder scale down by 1/2, 1/4 or 1/8 while decoding, never below
    ``size``; the antialiased bilinear resize does the rest). High-bit-depth
    files and DICOM are scaled to [0, 1] by the rules in the module docstring
    and resized in float before rounding to 8 bits, so no precision is lost twice.
    """
    from PIL import Image

    path = Path(path)
    if is_dicom(path):
        pixels = read_dicom(path)
        if pixels.ndim == 3:
            return _from_8bit(Image.fromarray(pixels), size, mode)
        return _from_unit(pixels, size, mode)
    with Image.open(path) as im:
        _refuse_stacks(path, im)
        if im.mode not in HIGH_DEPTH_MODES:
            im.draft(mode, (size, size))
            return _from_8bit(im, size, mode)
        unit = unit_range(np.asarray(im))
    return _from_unit(unit, size, mode)


def image_is_grey(path: Path, grey_modes: tuple[str, ...]) -> bool:
    """A grey mode (any bit depth), or RGB with three equal planes; DICOM by its header."""
    from PIL import Image

    path = Path(path)
    if is_dicom(path):
        return dicom_is_grey(path)
    with Image.open(path) as im:
        if im.mode in grey_modes:
            return True
        im.draft("RGB", (64, 64))
        rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
