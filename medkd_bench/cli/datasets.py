"""``medkd-bench datasets ...``: add the user's own images as a dataset; inspect a local copy before a run."""

from __future__ import annotations

import os
from pathlib import Path

import click

from medkd_bench.cli.app import DEFAULT_WORK_DIR, cli, console, load_cli_registry
from medkd_bench.cli.options import IMG_SIZE, FiniteFloat, parse_dataset_options, plugin_option
from medkd_bench.errors import MedkdError


@cli.group("datasets")
def datasets_cmd() -> None:
    """Datasets: add your own image folder or CSV manifest; check a local copy of a real dataset before a run."""


@datasets_cmd.command("check")
@click.argument("name")
@click.option("--root", "--data-root", "root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Folder holding the extracted dataset [env: MEDKD_DATA].")
@click.option("--img-size", type=IMG_SIZE, default=None, help="Decode at this size, 32-1024 px [default: the dataset's].")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="DATASET.KEY=VALUE",
              help="Override a dataset option, e.g. lc25000.seed=1.")
@click.option("--skip-bad", is_flag=True,
              help="Report bad files as warnings (exit 0) instead of errors (the default for a dataset added "
                   "with --skip-bad).")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="The decoded images are cached here, for the run to reuse.")
@plugin_option
def datasets_check(name, root, img_size, dataset_options, skip_bad, work_dir, plugin_files) -> None:
    """Read every file of dataset NAME; print class counts per split and every bad file.

    Exits 2 when a file is bad (unless --skip-bad) or a folder is missing.
    """
    from medkd_bench.data.check import check_dataset
    from medkd_bench.files.paths import check_writable

    registry = load_cli_registry(plugin_files, work_dir)
    spec = registry.get("dataset", name)
    options = parse_dataset_options(dataset_options, registry)
    others = sorted(set(options) - {name})
    if others:
        raise MedkdError(f"--dataset-option {others[0]}...: this check is of dataset {name!r}")
    check_writable(work_dir, "--work-dir")
    check_dataset(spec, root, img_size, options.get(name, {}), skip_bad, work_dir, console)


@datasets_cmd.command("add")
@click.argument("name")
@click.option("--folder", type=click.Path(path_type=Path), default=None,
              help="Image root: ROOT/{train,val,test}/<class>/* (official split) or ROOT/<class>/* (seeded split).")
@click.option("--csv", "manifest", type=click.Path(path_type=Path), default=None,
              help="CSV manifest with a header path,label[,split][,mask]; relative paths are relative to its folder.")
@click.option("--masks", type=click.Path(path_type=Path), default=None,
              help="Mask root mirroring --folder: the mask of ROOT/<rel>/<file> is MASKROOT/<rel>/<file>.")
@click.option("--val", type=FiniteFloat(0, 1, low_open=True), default=None,
              help="Fraction of each class for validation, when there is no official split [default: 0.1].")
@click.option("--test", type=FiniteFloat(0, 1, low_open=True), default=None,
              help="Fraction of each class for test, when there is no official split [default: 0.1].")
@click.option("--seed", type=int, default=None, help="Seed of the split, when there is no official split [default: 0].")
@click.option("--channels", type=click.Choice(["grey", "rgb"]), default=None,
              help="Read images as grey or RGB [default: grey if every sampled image is grey].")
@click.option("--img-size", type=IMG_SIZE, default=64, show_default=True,
              help="The dataset's default image size (a run's --img-size overrides it).")
@click.option("--skip-bad", is_flag=True,
              help="Add the dataset even if some files are bad; recorded in the spec file, so every command "
                   "(run, check, preview, explain) leaves bad files out with a warning, without --skip-bad.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Spec file to write [default: <work-dir>/datasets/<name>.json].")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="By default the spec file goes into its datasets/ folder, where every command given "
                   "this --work-dir finds it.")
def datasets_add(name, folder, manifest, masks, val, test, seed, channels, img_size, skip_bad, out, work_dir) -> None:
    """Register your own images as dataset NAME: list and check every file, then write a small spec file.

    The built-in image-folder plugin registers every spec file in the datasets/ folder of a command's
    --work-dir (so `run --work-dir W` finds what `datasets add --work-dir W` wrote), and those in
    $MEDKD_DATASETS (files or folders), else in .medkd/datasets/. Nothing is decoded except a few images to tell grey from RGB;
    `datasets check NAME` reads every file. Exits 2, writing nothing, on a folder with one class, a
    class too small for the split, a manifest row whose file is missing, a mask without its image.
    """
    from medkd_bench.data.dataset_files import dataset_spec_files, new_dataset, write_dataset_spec
    from medkd_bench.data.folder_dataset import SPLITS
    from medkd_bench.data.imagefiles import bad_file_policy
    from medkd_bench.spec_discovery import specs_in_work_dir
    from medkd_bench.specs import check_name

    check_name("dataset", name)
    if (folder is None) == (manifest is None):
        raise MedkdError("datasets add: give exactly one of --folder ROOT and --csv MANIFEST")
    if manifest is not None and masks is not None:
        raise MedkdError("--masks: a manifest names its masks in a mask column; --masks goes with --folder")
    split = {"seed": 0 if seed is None else seed, "val_fraction": 0.1 if val is None else val,
             "test_fraction": 0.1 if test is None else test}
    if split["val_fraction"] + split["test_fraction"] >= 1:
        raise MedkdError(f"--val {split['val_fraction']:g} + --test {split['test_fraction']:g} must be below 1")
    registry = load_cli_registry((), work_dir)
    if name in registry.datasets:
        raise MedkdError(f"dataset {name!r} is already registered by plugin {registry.owners[('dataset', name)]!r}; "
                         "choose another name (or remove its spec file first)")
    target = out if out is not None else work_dir / "datasets" / f"{name}.json"
    if target.exists():
        raise MedkdError(f"--out {target}: exists; remove it to add the dataset again")
    with bad_file_policy(skip_bad) as bad:
        dataset, doc = new_dataset(name, target, folder=folder, manifest=manifest, mask_root=masks, split=split,
                                   channels={"grey": 1, "rgb": 3}.get(channels), img_size=img_size,
                                   skip_bad=skip_bad)
    if dataset.layout == "split-folders" and (val, test, seed) != (None, None, None):
        console.print("note: --val, --test and --seed are not used: the folder keeps its official split")
    write_dataset_spec(doc, target)
    entries = dataset.entries(dataset.split)
    counts = ", ".join(f"{s} {len(entries[s])}" for s in SPLITS)
    console.print(f"added dataset {name}: {len(dataset.classes)} classes ({', '.join(dataset.classes)}), "
                  f"{dataset.layout}, {'grey' if dataset.channels == 1 else 'RGB'}"
                  f"{', with masks' if dataset.has_masks else ''}; files: {counts}", highlight=False, markup=False)
    if bad.problems:
        console.print(f"warning: {len(bad.problems)} bad file(s), first {bad.problems[0][0]}: "
                      f"{bad.problems[0][1]}; every command leaves them out (--skip-bad is recorded in the "
                      "spec file)", highlight=False, markup=False)
    console.print(f"spec file: {target}", highlight=False, markup=False)
    with specs_in_work_dir(work_dir):
        found = target.resolve() in {p.resolve() for p in dataset_spec_files()}
    if found:
        console.print(f"commands given --work-dir {work_dir} find it: medkd-bench run --datasets {name} "
                      f"--work-dir {work_dir}", highlight=False, markup=False)
    else:
        console.print(f"note: it is not where datasets are looked for (the datasets/ folder of a command's "
                      f"--work-dir, and $MEDKD_DATASETS, now "
                      f"{os.environ.get('MEDKD_DATASETS', 'unset: .medkd/datasets/')}); add it to $MEDKD_DATASETS",
                      highlight=False, markup=False)


@datasets_cmd.command("preview")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PNG file to write, e.g. preview.png.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="Split to draw from.")
@click.option("--per-class", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Images per class (a seeded pick: the same every time).")
@click.option("--root", "--data-root", "root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Folder holding the extracted dataset [env: MEDKD_DATA].")
@click.option("--img-size", type=IMG_SIZE, default=None, help="Decode at this size, 32-1024 px [default: the dataset's].")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="DATASET.KEY=VALUE",
              help="Override a dataset option, e.g. lc25000.seed=1.")
@click.option("--skip-bad", is_flag=True, help="Leave bad files out (with a warning) instead of stopping.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="Decoded images are read from (and left in) its cache, as for a run.")
@plugin_option
def datasets_preview(name, out, split, per_class, root, img_size, dataset_options, skip_bad, work_dir,
                     plugin_files) -> None:
    """Draw a grid of a few images per class of dataset NAME exactly as the model receives them.

    The pixels are those of a run: decoded (16-bit and DICOM scaled as documented), resized,
    grey repeated into three channels and standardised, then mapped back to 0-1 for display.
    Look at it before a long run: a white, black, inverted or mislabelled class shows at once.
    """
    from medkd_bench.data.prepare import prepare
    from medkd_bench.data.preview import check_out_file, render_preview
    from medkd_bench.files.paths import check_writable

    registry = load_cli_registry(plugin_files, work_dir)
    spec = registry.get("dataset", name)
    options = parse_dataset_options(dataset_options, registry)
    others = sorted(set(options) - {name})
    if others:
        raise MedkdError(f"--dataset-option {others[0]}...: this preview is of dataset {name!r}")
    check_out_file(out)  # before decoding: a bad path costs nothing
    cache_dir = None
    if spec.fingerprint is not None:
        check_writable(work_dir, "--work-dir")
        cache_dir = work_dir / "cache"
    data = prepare(spec, img_size, root, options.get(name, {}), cache_dir=cache_dir, skip_bad=skip_bad)
    written = render_preview(data, split, per_class, out)
    console.print(f"preview of {name} ({split}, up to {per_class} per class, {data.img_size} px): {written}",
                  highlight=False, markup=False)
