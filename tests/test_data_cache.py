"""The decoded-split cache: written once, read without decoding, invalidated by a changed file list."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medkd_bench import MedkdError
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from tests.fixture_trees import covid_tree, lc_tree

REGISTRY = load_registry()


def _entries(cache: Path, name: str) -> list[Path]:
    folder = cache / name
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _garble_keeping_sizes(files: list[Path]) -> None:
    """Overwrite each file with junk of the same size: the file list and sizes do not change."""
    for f in files:
        f.write_bytes(b"\0" * f.stat().st_size)


def test_second_load_reads_the_cache_not_the_images(tmp_path: Path):
    base = covid_tree(tmp_path / "data")
    spec = REGISTRY.datasets["covid-qu-ex"]
    cache = tmp_path / "cache"
    first = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    entries = _entries(cache, "covid-qu-ex")
    assert [e.name.split("-")[0] for e in entries] == ["test", "train", "val"]
    for e in entries:
        assert {p.name for p in e.iterdir()} == {"images.npy", "labels.npy", "mask-lung.npy", "meta.json"}
    # Every image and mask is now unreadable, but names and sizes are unchanged: a second load
    # that decoded anything would fail, so succeeding proves it read only the cache.
    _garble_keeping_sizes([p for p in base.rglob("*.png")])
    second = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    for split in ("train", "val", "test"):
        a, b = first.splits[split], second.splits[split]
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.masks["lung"], b.masks["lung"])
    assert isinstance(np.load(entries[0] / "images.npy", mmap_mode="r"), np.memmap)
    assert second.mean == pytest.approx(first.mean) and second.std == pytest.approx(first.std)
    # Without the cache the same tree cannot be read at all.
    with pytest.raises(MedkdError, match="unreadable or truncated"):
        prepare(spec, 32, tmp_path / "data", {})


def test_cache_is_invalidated_when_the_file_list_changes(tmp_path: Path):
    base = lc_tree(tmp_path / "data", per_class=6)
    spec = REGISTRY.datasets["lc25000-colon"]
    cache = tmp_path / "cache"
    before = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    assert len(_entries(cache, "lc25000-colon")) == 3
    new = base / "colon_image_sets" / "colon_n" / "colon_n99.jpeg"
    new.write_bytes((base / "colon_image_sets" / "colon_n" / "colon_n1.jpeg").read_bytes())
    after = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    total = sum(len(after.splits[s]) for s in ("train", "val", "test"))
    assert total == sum(len(before.splits[s]) for s in ("train", "val", "test")) + 1
    assert len(_entries(cache, "lc25000-colon")) == 6  # a new key for every split
    # A replaced file of another size changes the fingerprint too, and so do image size and options.
    new.write_bytes(new.read_bytes()[:-10])
    with pytest.raises(MedkdError, match="colon_n99.jpeg"):
        prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    new.unlink()
    prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)  # the original list: cached again
    assert len(_entries(cache, "lc25000-colon")) == 6
    prepare(spec, 24, tmp_path / "data", {"seed": 3}, cache_dir=cache)
    assert len(_entries(cache, "lc25000-colon")) == 9


def test_generated_datasets_are_not_cached(tmp_path: Path):
    spec = REGISTRY.datasets["synthetic-cxr"]
    prepare(spec, 32, None, {"n_train": 6, "n_val": 3, "n_test": 3}, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _test_entry(cache: Path, name: str) -> Path:
    (entry,) = [e for e in _entries(cache, name) if e.name.startswith("test-")]
    return entry


def test_a_bit_flipped_cache_file_is_decoded_again(tmp_path: Path, capsys):
    """One byte of a cached labels.npy flipped (0 -> 255): never a test label 255, always a warning naming it."""
    covid_tree(tmp_path / "data")
    spec = REGISTRY.datasets["covid-qu-ex"]
    cache = tmp_path / "cache"
    first = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    labels_file = _test_entry(cache, "covid-qu-ex") / "labels.npy"
    labels = np.load(labels_file)
    raw = bytearray(labels_file.read_bytes())
    raw[len(raw) - labels.nbytes + labels.itemsize * int(np.argmin(labels))] ^= 0xFF  # its low byte: 0 -> 255
    labels_file.write_bytes(bytes(raw))
    assert np.load(labels_file).max() == 255  # np.load takes it silently
    capsys.readouterr()
    second = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    for split in ("train", "val", "test"):
        assert torch.equal(first.splits[split].labels, second.splits[split].labels)
        assert torch.equal(first.splits[split].images, second.splits[split].images)
    err = capsys.readouterr().err.replace("\n", "")
    assert f"data cache {labels_file} is damaged (its SHA-256 differs" in err and "decoding it again" in err
    assert np.array_equal(np.load(labels_file), labels)  # written again, whole
    prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    assert capsys.readouterr().err == ""  # and read back silently


def test_an_entry_is_used_only_for_the_key_it_was_written_for(tmp_path: Path, capsys):
    """A folder name is only an address: an entry whose recorded key differs (moved, copied) is decoded again."""
    covid_tree(tmp_path / "data")
    spec = REGISTRY.datasets["covid-qu-ex"]
    cache = tmp_path / "cache"
    first = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    entries = {e.name.split("-")[0]: e for e in _entries(cache, "covid-qu-ex")}
    shutil.rmtree(entries["test"])
    shutil.copytree(entries["val"], entries["test"])  # the val split where the test split should be
    capsys.readouterr()
    second = prepare(spec, 32, tmp_path / "data", {}, cache_dir=cache)
    assert torch.equal(first.splits["test"].labels, second.splits["test"].labels)
    assert torch.equal(first.splits["test"].images, second.splits["test"].images)
    err = capsys.readouterr().err.replace("\n", "")
    assert f"data cache {entries['test']}" in err and "decoding it again" in err
