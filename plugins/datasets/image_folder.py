"""The user's own image folders and CSV manifests: one dataset per spec file from ``datasets add``.

``medkd-bench datasets add NAME --folder ROOT`` (or ``--csv MANIFEST``) lists
the images, checks them and writes ``.medkd/datasets/NAME.json``; this plugin
registers every such file as a dataset, the way ``ofa-search`` registers the
students ``student search`` writes. Layouts, mask pairing and the seeded
split are described in :mod:`medkd_bench.data.folder_dataset`.

Where files are found: the folders or files listed in ``$MEDKD_DATASETS``
(``os.pathsep``-separated), or ``.medkd/datasets/`` when it is unset. A bad
file fails with one line naming it.

The spec file names its own folder, so these datasets need no ``--data-root``.
They are read with the host's readers (bad files, ``--skip-bad``, the decoded
cache; a dataset added with ``--skip-bad`` leaves bad files out in every command), and their fingerprint (the spec file's content digest, every file's
path and size, the split) enters every cell's config hash.
"""

from medkd_bench import DatasetSpec, hookimpl, iter_folder_datasets

LAYOUT_TEXT = {
    "split-folders": "official train/val/test folders",
    "class-folders": "class folders, seeded stratified split",
    "manifest": "CSV manifest",
}


@hookimpl
def register_datasets(register):
    for dataset in iter_folder_datasets():
        masks = ("mask",) if dataset.has_masks else ()
        register(
            DatasetSpec(
                name=dataset.name,
                classes=dataset.classes,
                load=dataset.load,
                img_size=dataset.img_size,
                channels=dataset.channels,
                mask_names=masks,
                localisation_mask=masks[0] if masks else None,
                # The seeded split's seed and fractions, overridable with --dataset-option NAME.seed=1.
                options=dict(dataset.split),
                option_ranges={"val_fraction": (0.0, 1.0), "test_fraction": (0.0, 1.0)},
                needs_root=False,
                citation=f"the user's own images: {dataset.source}",
                description=(f"{len(dataset.classes)} classes from {dataset.source} "
                             f"({LAYOUT_TEXT[dataset.layout]}{', with masks' if masks else ''}); "
                             f"spec file {dataset.path}."),
                fingerprint=dataset.fingerprint,
                # `datasets add --skip-bad`, recorded in the spec file: runs need not repeat it.
                skip_bad=dataset.skip_bad,
                files=dataset.files,  # the data checks name the files of a duplicate pair
            )
        )
