"""Images as radiology and pathology exports come: 16-bit PNG, 32-bit float TIFF, DICOM; stray files.

Fixtures are written by the libraries' own writers (Pillow for PNG/TIFF,
pydicom for DICOM) with values a clipping reader gets wrong: 16-bit images
span about 1,000-60,000, so reading them as 8-bit gives an all-white image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medkd_bench.data.imagefiles import decode_image
from medkd_bench.registry import load_registry
from tests.fixture_trees import SIZE, grey_image, raw16, save_dicom, save_float_tiff, save_png16
from tests.helpers import assert_one_line_error
from tests.test_image_folder import add, specs  # noqa: F401  (specs is a fixture)

CLASSES = ("a", "b")


def assert_ordered(raw: np.ndarray, decoded: np.ndarray) -> None:
    """``decoded`` is a non-decreasing function of ``raw`` that uses the whole 8-bit range."""
    assert decoded.dtype == np.uint8 and decoded.shape == raw.shape
    assert decoded.min() == 0 and decoded.max() == 255, (decoded.min(), decoded.max())
    order = np.argsort(raw, axis=None, kind="stable")
    assert (np.diff(decoded.ravel()[order].astype(int)) >= 0).all(), "decoding reversed the order of some values"


def by_range(raw: np.ndarray) -> np.ndarray:
    """The documented scaling of a high-bit-depth image: its own minimum to 0, its maximum to 255."""
    raw = raw.astype(np.float64)
    return np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 255)


def test_a_16_bit_png_is_scaled_by_its_own_range_not_clipped_to_white(tmp_path):
    raw = raw16(1, 0)
    assert raw.min() > 255 and raw.max() > 50_000
    path = save_png16(tmp_path / "x.png", raw)
    decoded = decode_image(path, SIZE, "L")
    assert len(np.unique(decoded)) > 50, "a 16-bit PNG decoded to a (nearly) constant image"
    assert_ordered(raw, decoded)
    assert np.abs(decoded.astype(int) - by_range(raw)).max() <= 1
    rgb = decode_image(path, SIZE, "RGB")  # an RGB dataset repeats the plane
    assert rgb.shape == (SIZE, SIZE, 3) and (rgb == decoded[..., None]).all()
    small = decode_image(path, 20, "L")  # resized after scaling: still the whole range, not white
    assert small.shape == (20, 20) and small.max() > 200 and small.min() < 60


def test_a_32_bit_float_tiff_is_scaled_by_its_finite_range(tmp_path):
    raw = np.linspace(-3.5, 2.0, SIZE * SIZE).reshape(SIZE, SIZE)[:, ::-1].astype(np.float32)
    path = save_float_tiff(tmp_path / "map.tif", raw)
    decoded = decode_image(path, SIZE, "L")
    assert_ordered(raw, decoded)
    assert np.abs(decoded.astype(int) - by_range(raw)).max() <= 1
    raw[0, 0] = np.nan  # a missing value is drawn at the minimum, not spread over the image
    decoded = decode_image(save_float_tiff(tmp_path / "nan.tif", raw), SIZE, "L")
    assert decoded[0, 0] == 0 and decoded.max() == 255


def _sixteen_bit_tree(root: Path, per_class: int = 6) -> Path:
    for label, cls in enumerate(CLASSES):
        for i in range(per_class):
            save_png16(root / cls / f"{cls}_{i}.png", raw16(label, i))
    return root


def test_16_bit_pngs_in_an_image_folder_load_as_their_values_not_white(tmp_path, specs, run_cli):  # noqa: F811
    root = _sixteen_bit_tree(tmp_path / "imgs")
    added = add(run_cli, tmp_path, "sixteen", "--folder", str(root), "--val", "0.2", "--test", "0.2")
    assert added.exit_code == 0, added.err
    assert ", grey;" in added.out
    spec = load_registry().datasets["sixteen"]
    train = spec.load("train", SIZE, None, spec.options)
    assert len(train) >= 4
    for image in train.images[:, 0].numpy():
        assert len(np.unique(image)) > 50 and image.min() == 0 and image.max() == 255


def test_a_manifest_reads_16_bit_png_float_tiff_and_dicom_alike(tmp_path, specs, run_cli):  # noqa: F811
    files = tmp_path / "files"
    rows = ["path,label,split"]
    raws = {}
    for label, cls in enumerate(CLASSES):
        for split in ("train", "val", "test"):
            raw = raw16(label, len(raws))
            if split == "train":
                name = f"{cls}_{split}.png"
                save_png16(files / name, raw)
            elif split == "val":
                name = f"{cls}_{split}.tif"
                save_float_tiff(files / name, raw.astype(np.float32) / 1000.0 - 20.0)
            else:
                name = f"{cls}_{split}.dcm"
                save_dicom(files / name, raw)
            raws[name] = raw
            rows.append(f"{name},{cls},{split}")
    (files / "list.csv").write_text("\n".join(rows) + "\n")
    added = add(run_cli, tmp_path, "mixed", "--csv", str(files / "list.csv"))
    assert added.exit_code == 0, added.err
    assert "2 classes (a, b), manifest, grey; files: train 2, val 2, test 2" in added.out
    spec = load_registry().datasets["mixed"]
    for split, suffix in (("train", "png"), ("val", "tif"), ("test", "dcm")):
        data = spec.load(split, SIZE, None, spec.options)
        for label, image in zip(data.labels.tolist(), data.images[:, 0].numpy(), strict=True):
            assert_ordered(raws[f"{CLASSES[label]}_{split}.{suffix}"], image)


def test_dicom_ct_applies_the_rescale_intercept_then_the_window(tmp_path):
    # Stored values are signed (Pixel Representation 1); HU = stored - 1024.
    stored = np.linspace(-1000, 3000, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.int16)
    hu = stored.astype(np.float64) - 1024
    path = save_dicom(tmp_path / "ct.dcm", stored, RescaleIntercept=-1024, RescaleSlope=1,
                      WindowCenter=40, WindowWidth=400)
    decoded = decode_image(path, SIZE, "L").astype(int)
    assert (decoded[hu < -160] == 0).all() and (decoded[hu > 240] == 255).all()  # the soft-tissue window
    inside = (hu > -150) & (hu < 230)
    expected = ((hu - 40 + 0.5) / 399 + 0.5) * 255  # DICOM's linear window on Hounsfield units
    assert inside.sum() > 20 and np.abs(decoded[inside] - expected[inside]).max() <= 1.5
    centre = np.unravel_index(np.abs(hu - 40).argmin(), hu.shape)
    assert abs(decoded[centre] - 127.5) <= 2  # HU 40 (stored 1064) is mid-grey: the intercept was applied
    assert_ordered(stored, decoded.astype(np.uint8))

    plain = save_dicom(tmp_path / "nowindow.dcm", stored, RescaleIntercept=-1024, RescaleSlope=1)
    assert_ordered(stored, decode_image(plain, SIZE, "L"))  # no window: the image's own HU range


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = np.linspace(0, 4095, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.uint16)
    normal = decode_image(save_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2"), SIZE, "L").astype(int)
    inverted = decode_image(save_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1"), SIZE, "L").astype(int)
    assert normal[0, 0] == 0 and normal[-1, -1] == 255  # higher values brighter
    assert inverted[0, 0] == 255 and inverted[-1, -1] == 0  # MONOCHROME1: higher values darker
    assert np.abs(normal + inverted - 255).max() <= 1


def test_a_dicom_file_without_an_extension_is_recognised_by_its_marker(tmp_path, specs, run_cli):  # noqa: F811
    for label, cls in enumerate(CLASSES):
        for i in range(5):
            save_dicom(tmp_path / "pacs" / cls / f"1.2.840.{label}.{i}", raw16(label, i))  # PACS-style names
    added = add(run_cli, tmp_path, "pacs", "--folder", str(tmp_path / "pacs"), "--val", "0.2", "--test", "0.2")
    assert added.exit_code == 0, added.err
    spec = load_registry().datasets["pacs"]
    assert all(len(np.unique(im)) > 50 for im in spec.load("train", SIZE, None, spec.options).images[:, 0].numpy())


def _dicom_tree(root: Path, extra: dict[str, np.ndarray] | None = None) -> Path:
    for label, cls in enumerate(CLASSES):
        for i in range(5):
            save_dicom(root / cls / f"{cls}_{i}.dcm", raw16(label, i))
    for name, pixels in (extra or {}).items():
        save_dicom(root / name, pixels)
    return root


def test_a_multi_frame_dicom_is_refused_with_one_line_naming_it(tmp_path, specs, run_cli):  # noqa: F811
    stack = np.stack([raw16(0, 9), raw16(0, 10), raw16(0, 11)])
    root = _dicom_tree(tmp_path / "dcm", {"a/cine.dcm": stack})
    assert add(run_cli, tmp_path, "cine", "--folder", str(root), "--val", "0.2", "--test", "0.2").exit_code == 0
    work = ["--work-dir", str(tmp_path / "work"), "--img-size", "32"]
    strict = run_cli(["datasets", "check", "cine", *work])
    assert_one_line_error(strict, str(root / "a" / "cine.dcm"), "multi-frame", "3 frames")
    lenient = run_cli(["datasets", "check", "cine", *work, "--skip-bad"])
    assert lenient.exit_code == 0 and "1 bad file(s) will be left out" in lenient.out


def test_dicom_without_pydicom_is_one_line_saying_what_to_install(tmp_path, specs, run_cli, monkeypatch):  # noqa: F811
    root = _dicom_tree(tmp_path / "dcm")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    added = add(run_cli, tmp_path, "nodcm", "--folder", str(root), "--val", "0.2", "--test", "0.2")
    assert_one_line_error(added, 'pip install "medkd-bench[dicom]"', ".dcm")
    assert not (tmp_path / "specs" / "nodcm.json").exists()
    with pytest.raises(Exception, match=r'pip install "medkd-bench\[dicom\]"'):
        decode_image(root / "a" / "a_0.dcm", SIZE, "L")


def test_stray_files_follow_one_policy_stated_by_datasets_check(tmp_path, specs, run_cli):  # noqa: F811
    root = tmp_path / "imgs"
    for label, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(grey_image(label, i)).save(root / cls / f"{i}.png")
    # What Windows, macOS and zip tools leave behind is ignored, the same way, wherever it is.
    (root / "a" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnail cache")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "b" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "b" / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (root / "__MACOSX" / "a").mkdir(parents=True)  # a zip from a Mac: not a third class
    (root / "__MACOSX" / "a" / "._0.png").write_bytes(b"\0\5\26\7")
    added = add(run_cli, tmp_path, "tidy", "--folder", str(root), "--val", "0.2", "--test", "0.2")
    assert added.exit_code == 0, added.err
    assert "2 classes (a, b)" in added.out
    check = run_cli(["datasets", "check", "tidy", "--work-dir", str(tmp_path / "work"), "--img-size", "32"])
    assert check.exit_code == 0, check.err
    out = " ".join(check.out.split())
    assert "stray files: 5 system file(s) ignored" in out, out
    assert "Thumbs.db" in out and "any other file that is not an image is a bad file" in out
    # Any other stray file is a bad file, in every folder, whether or not --skip-bad is given.
    (root / "b" / "notes.txt").write_text("scanned twice")
    strict = run_cli(["datasets", "check", "tidy", "--work-dir", str(tmp_path / "work2"), "--img-size", "32"])
    assert_one_line_error(strict, "notes.txt")


def test_the_decoded_cache_is_keyed_by_the_decoder_version(tmp_path, monkeypatch):
    from medkd_bench.data import cache as cache_module
    from medkd_bench.data.cache import SplitCache

    spec = load_registry().datasets["synthetic-cxr"]
    before = SplitCache(tmp_path, spec, 32, None, {}, {"files": 1}).keys
    monkeypatch.setattr(cache_module, "DECODER_VERSION", cache_module.DECODER_VERSION + 1)
    after = SplitCache(tmp_path, spec, 32, None, {}, {"files": 1}).keys
    assert all(before[s] != after[s] for s in before), "an entry decoded by an older decoder would be served"
