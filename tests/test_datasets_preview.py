"""`datasets preview NAME --out FILE.png`: a grid per class of the pixels the model receives."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medkd_bench.data.prepare import prepare
from medkd_bench.data.preview import preview_rows
from medkd_bench.registry import load_registry
from tests.fixture_trees import raw16, save_png16
from tests.helpers import assert_one_line_error
from tests.test_image_folder import add, specs  # noqa: F401  (specs is a fixture)

TINY_CXR = ["--dataset-option", "synthetic-cxr.n_train=12", "--dataset-option", "synthetic-cxr.n_val=6",
            "--dataset-option", "synthetic-cxr.n_test=6", "--img-size", "32"]


def test_preview_draws_each_class_of_16_bit_images_as_the_model_sees_them(tmp_path, specs, run_cli):  # noqa: F811
    for label, cls in enumerate(("a", "b")):
        for i in range(6):
            save_png16(tmp_path / "imgs" / cls / f"{i}.png", raw16(label, i))
    assert add(run_cli, tmp_path, "sixteen", "--folder", str(tmp_path / "imgs"), "--val", "0.2",
               "--test", "0.2").exit_code == 0
    out = tmp_path / "look" / "sixteen.png"
    work = tmp_path / "work"
    result = run_cli(["datasets", "preview", "sixteen", "--out", str(out), "--per-class", "3", "--img-size", "32",
                      "--work-dir", str(work)])
    assert result.exit_code == 0, result.err
    assert f"preview of sixteen (train, up to 3 per class, 32 px): {out}" in " ".join(result.out.split())
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200
        assert len(np.unique(np.asarray(im.convert("L")))) > 50  # images, not blank squares

    # The grid's pixels are the model's input mapped back: not white, and equal to the decoded split.
    spec = load_registry().datasets["sixteen"]
    data = prepare(spec, 32, None, {}, cache_dir=work / "cache")
    rows = preview_rows(data, "train", 3)
    assert [r.name for r in rows] == ["a", "b"] and all(len(r.indices) == 3 for r in rows)
    for row in rows:
        assert row.images.shape == (3, 32, 32, 3) and row.images.std() > 0.1 and row.images.max() < 1.0 + 1e-6
        expected = data.splits["train"].images[row.indices].float().div(255).permute(0, 2, 3, 1).expand(-1, -1, -1, 3)
        assert torch.allclose(torch.from_numpy(row.images), expected, atol=1e-5)
        assert (data.splits["train"].labels[row.indices] == rows.index(row)).all()


def test_preview_of_an_embedded_dataset_and_its_one_line_errors(tmp_path, run_cli):
    out = tmp_path / "cxr.png"
    ok = run_cli(["datasets", "preview", "synthetic-cxr", "--out", str(out), "--split", "test", *TINY_CXR])
    assert ok.exit_code == 0, ok.err
    assert out.is_file() and "preview of synthetic-cxr (test, up to 4 per class, 32 px)" in ok.out

    unknown = run_cli(["datasets", "preview", "no-such-set", "--out", str(tmp_path / "x.png")])
    assert_one_line_error(unknown, "unknown dataset 'no-such-set'")

    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / "preview.png"  # its folder is a file: cannot be written
    bad = run_cli(["datasets", "preview", "synthetic-cxr", "--out", str(blocked), *TINY_CXR])
    assert_one_line_error(bad, f"--out {blocked}: cannot be written")

    not_png = run_cli(["datasets", "preview", "synthetic-cxr", "--out", str(tmp_path / "x.jpg"), *TINY_CXR])
    assert_one_line_error(not_png, "give a file name ending in .png")
    folder = run_cli(["datasets", "preview", "synthetic-cxr", "--out", str(tmp_path), *TINY_CXR])
    assert_one_line_error(folder)
