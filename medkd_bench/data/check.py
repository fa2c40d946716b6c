"""``medkd-bench datasets check``: read a dataset once and report what a run would see.

It reads every file (collecting every bad one rather than stopping at the
first), prints the class counts of each split and the bad files in rich
tables, then the data checks a reviewer would ask for (leakage across splits,
class imbalance, grey and colour mixed in a class, a test split too small:
:mod:`medkd_bench.data.audit`), and leaves the decoded splits in the run's
cache, so the run that follows starts from the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medkd_bench.data.audit import CheckResult, audit
from medkd_bench.data.imagefiles import STRAY_POLICY, record_ignored
from medkd_bench.data.prepare import SPLITS, PreparedData, dataset_fingerprint, prepare
from medkd_bench.errors import MedkdError
from medkd_bench.specs import DatasetSpec

#: Bad files listed one by one; the rest are counted.
MAX_LISTED = 50


def counts_table(data: PreparedData) -> Table:
    """Images per class and split, and per mask how many images have a non-empty one."""
    spec = data.spec
    table = Table("class", *SPLITS, "total", title=f"{spec.name}: images per class and split at {data.img_size} px")
    per_split = {s: torch.bincount(data.splits[s].labels, minlength=spec.num_classes).tolist() for s in SPLITS}
    for i, cls in enumerate(spec.classes):
        row = [per_split[s][i] for s in SPLITS]
        table.add_row(escape(cls), *map(str, row), str(sum(row)))
    totals = [len(data.splits[s]) for s in SPLITS]
    table.add_row("[bold]all[/]", *map(str, totals), str(sum(totals)))
    for mask in spec.mask_names:
        with_mask = [int(data.splits[s].masks[mask].flatten(1).any(1).sum()) for s in SPLITS]
        table.add_row(f"[dim]non-empty {escape(mask)} mask[/]", *map(str, with_mask), str(sum(with_mask)))
    return table


def stray_files_line(ignored: set[str], named: int = 5) -> str:
    """How many system files were ignored (a few named) and the policy that applies to stray files.

    Stated on every check, not only when something was ignored: the user
    should know before a ``Thumbs.db`` or a ``notes.txt`` turns up which of the two fails a run.
    """
    names = sorted({Path(p).name for p in ignored})
    found = (f"{len(ignored)} system file(s) ignored ({', '.join(names[:named])}"
             f"{', ...' if len(names) > named else ''})" if ignored else "no system files found")
    return f"stray files: {found}; policy: {STRAY_POLICY}"


def bad_files_line(spec: DatasetSpec, skip_bad: bool) -> str:
    """What a run does with a bad file of this dataset, and who decided it.

    Stated on every check: a choice recorded at ``datasets add --skip-bad`` is
    invisible in the run's own command line, so the check is where it is told.
    """
    if spec.skip_bad:
        return ("bad files: left out (datasets add --skip-bad, recorded in the dataset's spec file), "
                "with a warning naming each, in every command")
    if skip_bad:
        return "bad files: left out here (--skip-bad); a run stops at one unless it too is given --skip-bad"
    return "bad files: stop every command at the first unless it is given --skip-bad"


def problems_table(problems: list[tuple[str, str]]) -> Table:
    table = Table(title=f"{len(problems)} bad file(s)", title_style="bold red")
    table.add_column("file", overflow="fold")  # the whole path, wrapped: it is what the user must find
    table.add_column("problem")
    for path, problem in problems[:MAX_LISTED]:
        table.add_row(escape(path), escape(problem))
    if len(problems) > MAX_LISTED:
        table.add_row(f"... and {len(problems) - MAX_LISTED} more", "")
    return table


def check_dataset(spec: DatasetSpec, root: Path | None, img_size: int | None, options: Mapping[str, Any],
                  skip_bad: bool, work_dir: Path, console: Console) -> PreparedData:
    """Load every split, print counts and bad files; raise unless every file was good or ``skip_bad``."""
    if spec.needs_root:
        if root is None:
            raise MedkdError(f"dataset {spec.name!r} needs a local copy: pass --root or set MEDKD_DATA")
        if spec.locate is not None:
            console.print(f"{spec.name}: reading {escape(str(spec.locate(Path(root))))}", highlight=False)
    with record_ignored() as ignored:  # system files skipped by the listings and digests below
        # Datasets whose spec names their own files (``datasets add``) have a fingerprint and no root.
        fingerprint = dataset_fingerprint(spec, root, {**spec.options, **options})
        if fingerprint:
            console.print("fingerprint: " + ", ".join(f"{k} {v}" for k, v in fingerprint.items()), highlight=False)
        data = prepare(spec, img_size, root, options, cache_dir=work_dir / "cache", skip_bad=True,
                       warn_skipped=False)
    console.print(counts_table(data))
    console.print(stray_files_line(ignored), highlight=False, markup=False)
    console.print(bad_files_line(spec, skip_bad), highlight=False, markup=False)
    if data.skipped:
        console.print(problems_table(data.skipped))
        if not (skip_bad or spec.skip_bad):
            raise MedkdError(f"dataset {spec.name!r}: {len(data.skipped)} bad file(s), listed above, "
                             f"first {data.skipped[0][0]}: {data.skipped[0][1]}; fix them or pass --skip-bad")
        why = "--skip-bad" if skip_bad else "datasets add --skip-bad"
        console.print(f"[yellow]warning:[/] {len(data.skipped)} bad file(s) will be left out ({why})")
    else:
        console.print(f"[green]ok:[/] {spec.name}: every file read", highlight=False)
    console.print(audit_table(spec.name, audit(data, root, options, cache_dir=work_dir / "cache")))
    return data


def audit_table(name: str, results: list[CheckResult]) -> Table:
    """Every data check with its result (passed ones too: a reviewer wants to see that they ran)."""
    failed = sum(not r.ok for r in results)
    table = Table(title=f"{name}: data checks ({failed} warning(s))" if failed else f"{name}: data checks")
    table.add_column("check")
    table.add_column("result", overflow="fold")
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[yellow]warning[/]"
        table.add_row(r.check, f"{mark}: {escape(r.summary)}" + "".join(f"\n  {escape(d)}" for d in r.details))
    return table
