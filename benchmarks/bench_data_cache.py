"""First (decoding) load vs cached load of a real-layout dataset, in images per second.

Writes an LC25000-shaped tree of random-texture 768 px JPEGs (the real
files' size and format) into a temporary folder, then times
``data.prepare`` three ways on it:

* decode with one thread (no cache),
* first load with the cache: decode with the thread pool and write the cache,
* second load: read the memory-mapped cache, plus one pass over the pixels
  (the train-split statistics prepare computes anyway).

The tree is written once per invocation and not timed. The default is tiny
so the script runs in seconds; for representative numbers use e.g.
``--per-class 1000`` (5,000 images) on an idle machine.

Usage: python benchmarks/bench_data_cache.py [--per-class 20] [--img-size 224] [--source-size 768] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medkd_bench.data.imagefiles import default_threads
from medkd_bench.data.prepare import SPLITS, prepare
from medkd_bench.registry import load_registry

CLASSES = (("lung_image_sets", "lung_aca"), ("lung_image_sets", "lung_n"), ("lung_image_sets", "lung_scc"),
           ("colon_image_sets", "colon_aca"), ("colon_image_sets", "colon_n"))


def write_tree(root: Path, per_class: int, size: int) -> int:
    """Smooth random colour textures saved as JPEG quality 95, like the scanned slides."""
    rng = np.random.default_rng(0)
    n = 0
    for group, cls in CLASSES:
        folder = root / "lung_colon_image_set" / group / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(
                folder / f"{cls}{i + 1}.jpeg", quality=95)
            n += 1
    return n


def timed_load(root: Path, img_size: int, cache: Path | None) -> float:
    spec = load_registry().datasets["lc25000"]
    start = time.perf_counter()
    data = prepare(spec, img_size, root, {}, cache_dir=cache)
    for split in SPLITS:  # touch every pixel, so a memory-mapped load is not free by laziness
        int(data.splits[split].images.sum())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=20, help="at least 3: every split needs a file")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--source-size", type=int, default=768)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="medkd-bench-cache-"))
    try:
        n = write_tree(tmp / "data", args.per_class, args.source_size)
        print(f"{n} JPEGs at {args.source_size} px -> {args.img_size} px; {os.cpu_count()} cores")
        os.environ["MEDKD_DECODE_THREADS"] = "1"
        single = timed_load(tmp / "data", args.img_size, None)
        os.environ["MEDKD_DECODE_THREADS"] = str(args.threads)
        first = timed_load(tmp / "data", args.img_size, tmp / "cache")
        cached = timed_load(tmp / "data", args.img_size, tmp / "cache")
        print(f"{'load':<40}{'seconds':>10}{'images/s':>12}{'vs 1 thread':>13}")
        for label, seconds in (("decode, 1 thread, no cache", single),
                               (f"first load: decode x{args.threads} threads + write", first),
                               ("second load: cached (memory-mapped)", cached)):
            print(f"{label:<40}{seconds:>10.3f}{n / seconds:>12.0f}{single / seconds:>12.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
