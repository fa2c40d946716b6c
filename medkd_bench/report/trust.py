""""Can these comparisons be trusted?": the section at the top of every leaderboard page, and the row flags.

A reader of a KD leaderboard needs three facts before any gain means
anything: did the models train to convergence (else the comparison measures
training length), is the teacher better than the student trained on labels
alone (else there is nothing to distil), and how large a gain could the
page's test set reveal at all (else a small gain is noise by construction).
This module states each one from the stored cells, and marks the rows of
the tables that fall short:

* :data:`UNCONVERGED` beside a model's name: it (or, in a distilled row's
  teacher column, the teacher it learned from) did not stop on a validation
  plateau (:mod:`medkd_bench.report.convergence`);
* :data:`UNDETECTABLE` after a gain: smaller than the row's minimum
  detectable gain (:func:`detectable_gain`);
* :data:`RETRAINED_TEACHER` beside a distilled row's teacher: a cell of the
  row learned from an earlier checkpoint of the teacher whose row the page
  shows (:func:`taught_by_earlier_checkpoint`).

The teacher's margin over the label-only student is computed exactly like a
KD gain (:meth:`RowStats.margin <medkd_bench.report.row_stats.RowStats.margin>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkd_bench.evaluate import power
from medkd_bench.evaluate.stats import SEEDS_AND_IMAGES
from medkd_bench.report.convergence import at_chance_text, converged, convergence_text, stop_counts
from medkd_bench.report.format import count
from medkd_bench.report.recipes import mixed_recipes
from medkd_bench.report.row_stats import RowStats, teacher_for
from medkd_bench.run.store import CellRecord
from medkd_bench.specs import BASE_METHODS

Key = tuple[str, str, str]  # (method, teacher, student): one leaderboard row, all seeds

#: Beside a model's name: not shown to have converged. (‡ and † are taken: weak teacher, significant gain.)
UNCONVERGED = "§"
#: After a gain: smaller than the gain the row's paired test detects with 80% power.
UNDETECTABLE = "≈"
#: Beside a distilled row's teacher: the teacher was trained again after a cell of the row learned from it.
RETRAINED_TEACHER = "↻"


def taught_by_earlier_checkpoint(cell: CellRecord, teacher: CellRecord | None) -> bool | None:
    """Whether a distilled cell learned from another checkpoint than its teacher's stored row now has.

    A teacher cell is trained again when its checkpoint is lost or damaged,
    and on another machine (this project's alternate between Intel and AMD)
    the same cell gives other weights: its row then shows the new
    checkpoint's results while students distilled before keep the old one's
    teaching. A cell that recorded its teacher's checkpoint digest
    (``teacher_checkpoint_sha256``) is compared by digest; one stored before
    that record by time: its teacher finished training after it started.
    ``None`` for cells with no teacher on the page.
    """
    if teacher is None or cell.method in BASE_METHODS:
        return None
    taught, current = cell.metrics.get("teacher_checkpoint_sha256"), teacher.artifacts.get("checkpoint_sha256")
    if taught and current:
        return taught != current
    return bool(cell.started_at and teacher.finished_at and teacher.finished_at > cell.started_at)


def detectable_gain(gain: Mapping[str, Any] | None) -> float | None:
    """The minimum detectable gain of a KD-gain (or margin) result from :class:`RowStats`, as a fraction.

    Over several seeds, that of the t test behind its CI, from the CI's own
    standard error and degrees of freedom (seed spread and test images,
    :func:`medkd_bench.evaluate.power.t_detectable_difference`). For one
    seed, McNemar's: from its test-set size and discordance rate
    (:func:`medkd_bench.evaluate.power.detectable_difference`). ``None``
    without per-image predictions (no McNemar counts) or when no gain is
    detectable.
    """
    rate = _discordance(gain)
    if rate is None or gain is None:
        return None
    if gain.get("ci_basis") == SEEDS_AND_IMAGES:
        return power.t_detectable_difference(float(gain["se"]), float(gain["df"]))
    return power.detectable_difference(int(gain["n"]), rate)


def below_detectable(gain: Mapping[str, Any] | None) -> bool:
    """Whether the gain is smaller than its minimum detectable gain (or none is detectable); False if untested."""
    if _discordance(gain) is None or gain is None:
        return False
    mde = detectable_gain(gain)
    return mde is None or abs(gain["mean"]) < mde


def _discordance(gain: Mapping[str, Any] | None) -> float | None:
    if not gain or not gain.get("mcnemar") or not gain.get("n"):
        return None
    return power.discordance_rate(gain["mcnemar"], int(gain["n"]))


def _pp(x: float) -> str:
    return f"{100 * x:.1f} pp"


@dataclass(frozen=True)
class RowFlags:
    """What a table row is flagged for (each flag's symbol is above)."""

    student_unconverged: bool = False
    #: In a distilled row, the teacher it learned from; in a teacher row, the teacher itself.
    teacher_unconverged: bool = False
    undetectable: bool = False
    teacher_retrained: bool = False

    @property
    def student_mark(self) -> str:
        return f" {UNCONVERGED}" if self.student_unconverged else ""

    @property
    def teacher_mark(self) -> str:
        return ((f" {UNCONVERGED}" if self.teacher_unconverged else "")
                + (f" {RETRAINED_TEACHER}" if self.teacher_retrained else ""))

    @property
    def gain_mark(self) -> str:
        return UNDETECTABLE if self.undetectable else ""


NO_FLAGS = RowFlags()


def legends(teacher_rows: Sequence[RowFlags], student_rows: Sequence[RowFlags]) -> dict[str, bool]:
    """Which flags' legends a page prints: only those its tables show."""
    return {"unconverged_teachers": any(f.teacher_unconverged for f in teacher_rows),
            "unconverged_students": any(f.student_unconverged or f.teacher_unconverged for f in student_rows),
            "undetectable": any(f.undetectable for f in student_rows),
            "retrained_teachers": any(f.teacher_retrained for f in student_rows)}


@dataclass
class Trust:
    """The trust section and flags of one page, from its rows (``groups``) and their KD gains."""

    groups: Mapping[Key, list[CellRecord]]
    gains: Mapping[Key, dict[str, Any] | None]
    row_stats: RowStats

    def teacher_cells(self, key: Key) -> list[CellRecord]:
        """The teacher cells a distilled row learned from: by the teacher hash in each cell's config.

        Cells whose config names no teacher on the page get the teacher cell of
        their seed, else its lowest seed's (:func:`teacher_for`).
        """
        teachers = self.groups.get(("teacher", key[1], ""), [])
        by_hash = {t.hash: t for t in teachers}
        found: dict[str, CellRecord] = {}
        for r in self.groups.get(key, []):
            t = by_hash.get(r.config.get("teacher", "")) or teacher_for(r.seed, teachers)
            if t is not None:
                found[t.hash] = t
        return list(found.values())

    def earlier_teacher_cells(self, key: Key) -> list[CellRecord]:
        """The row's cells that learned from an earlier checkpoint of the teacher the page shows."""
        teachers = {t.hash: t for t in self.groups.get(("teacher", key[1], ""), [])}
        return [r for r in self.groups.get(key, [])
                if taught_by_earlier_checkpoint(r, teachers.get(r.config.get("teacher", "")))]

    def model_converged(self, key: Key) -> bool:
        return converged(self.groups.get(key, []))

    def teacher_converged(self, key: Key) -> bool:
        """For a distilled row, whether its teacher converged; True for other rows (they have none)."""
        return key[0] in BASE_METHODS or converged(self.teacher_cells(key))

    def below_detectable(self, key: Key) -> bool:
        return below_detectable(self.gains.get(key))

    def flags(self, key: Key) -> RowFlags:
        """A student table row's flags."""
        return RowFlags(not self.model_converged(key), not self.teacher_converged(key), self.below_detectable(key),
                        bool(self.earlier_teacher_cells(key)))

    def section(self, n_test: int) -> dict[str, Any]:
        """What the page's "Can these comparisons be trusted?" section says (``trust.md.j2``)."""
        keys = list(self.groups)
        teacher_keys = sorted((k for k in keys if k[0] == "teacher"),
                              key=lambda k: -self.groups[k][0].metrics.get("accuracy", 0.0))
        baselines = sorted(k for k in keys if k[0] == "label-only")
        distilled = [k for k in keys if k[0] not in BASE_METHODS]
        cells = [r for k in distilled for r in self.groups[k]]
        flagged = [k for k in distilled
                   if not (self.model_converged(k) and self.teacher_converged(k)) or self.below_detectable(k)]
        return {
            "teachers": [{"name": k[1], "convergence": convergence_text(self.groups[k]),
                          "margins": [self._margin(k, b) for b in baselines]} for k in teacher_keys],
            "baselines": [{"name": k[2], "convergence": convergence_text(self.groups[k]),
                           "spread": seed_spread_text(self.groups[k]),
                           "mixed": mixed_recipes([r for j in keys if j[2] == k[2] for r in self.groups[j]])}
                          for k in baselines],
            "distilled": (f"{count(len(cells), 'cell')} in {count(len(distilled), 'row')}; stopped: "
                          f"{stop_counts(cells)}; rows flagged in the students table (not converged, or gain below "
                          f"detectable): {len(flagged)} of {len(distilled)}{_undistilled(teacher_keys, distilled)}"
                          if cells else None),
            "retrained": _retrained_text({k: self.earlier_teacher_cells(k) for k in distilled}),
            "at_chance": at_chance_text(self.groups, self.row_stats.labels),
            "detectable": self._detectable_text(distilled, n_test),
            "seeds": self._seeds_text(distilled, n_test),
        }

    def _margin(self, teacher: Key, baseline: Key) -> dict[str, str]:
        margin = self.row_stats.margin(self.groups[teacher], self.groups[baseline])
        text = "-" if margin is None else f"{100 * margin['mean']:+.1f} pp"
        if margin and margin.get("ci"):
            lo, hi = margin["ci"]
            text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        pairing = ""
        if margin and margin["teacher_seeds"] != margin["seeds"]:
            teacher_seeds = ", ".join(map(str, sorted(set(margin["teacher_seeds"]))))
            pairing = (f" (teacher seed{'s' if len(set(margin['teacher_seeds'])) > 1 else ''} {teacher_seeds} "
                       f"against label-only seeds {', '.join(map(str, margin['seeds']))})")
        return {"student": baseline[2], "margin": text + pairing, "verdict": margin_verdict(margin)}

    def _detectable_text(self, distilled: list[Key], n_test: int) -> str:
        gains = [g for k in distilled if (g := self.gains.get(k)) and _discordance(g) is not None]
        if not distilled:
            return "No distilled rows yet: there is no gain to test."
        if not gains:
            return ("No distilled row has per-image test predictions paired with its label-only student, so the "
                    "smallest detectable gain cannot be computed.")
        n = int(gains[0]["n"]) or n_test
        rate = sum(sum(m["b"] + m["c"] for m in g["mcnemar"]) for g in gains) / sum(
            int(g["n"]) * len(g["mcnemar"]) for g in gains)
        mde, approx = power.detectable_difference(n, rate), power.connor_detectable_difference(n, rate)
        several = any(g.get("ci_basis") == SEEDS_AND_IMAGES for g in gains)
        opening = f"With {n} test images and a discordance rate of {100 * rate:.1f}%"
        if mde is None:
            text = (f"{opening}, no gain can be told from noise with 80% power: even if every discordant image "
                    "went the distilled student's way, McNemar's exact test (alpha 0.05) would reject less than "
                    "80% of the time.")
            return text + (" That is one seed's test set; training noise across seeds adds to it." if several else "")
        text = (f"{opening}, a gain smaller than {_pp(mde)} cannot be told from noise (80% power, alpha 0.05)"
                + (" on one seed's test set, before training noise across seeds adds to it." if several else "."))
        return text + (
            " The discordance rate is the share of test images on which a distilled student and its label-only "
            "student differ in correctness, pooled over the page's distilled cells; the figure is exact for "
            "McNemar's exact test (binomial, two-sided), the test in the tables"
            + (f" (Connor's 1987 normal approximation gives {_pp(approx)})." if approx is not None else ".")
            + " Each cell's own figure (from its own discordance) is `detectable_gain` in `results.csv`"
            + ("." if several else f"; {UNDETECTABLE} marks gains below it."))

    def _seeds_text(self, distilled: list[Key], n_test: int) -> str | None:
        seeds = sorted({r.seed for k in distilled for r in self.groups[k]})
        if not seeds:
            return None
        if len(seeds) < 2:
            return ("One training seed: each gain's CI resamples the test images only, so it says how sure the "
                    "comparison of these two trained models is, not whether the method beats label-only training "
                    "(another seed can move a gain by several points). No gain is marked † until several seeds "
                    "show it: claims about a method need `--seeds 3` or more.")
        text = (f"Seeds {', '.join(map(str, seeds))}: each gain is the mean over seeds of the distilled student "
                f"minus the label-only student of the same seed, all scored on the same {n_test} test images. Its "
                "95% CI is a t interval whose variance adds the spread of the per-seed gains (training noise) to "
                "the bootstrap variance over those images (test-set noise, which averaging seeds does not remove), "
                "with Welch-Satterthwaite degrees of freedom: with few seeds it is wide by design, and † needs it "
                "to exclude 0. McNemar's test runs per seed.")
        mdes = sorted(m for k in distilled if (g := self.gains.get(k)) and g.get("ci_basis") == SEEDS_AND_IMAGES
                      and (m := detectable_gain(g)) is not None)
        if mdes:
            spread = (f"from {_pp(mdes[0])} to {_pp(mdes[-1])} (median {_pp(float(np.median(mdes)))})"
                      if len(mdes) > 1 else _pp(mdes[0]))
            text += (f" The smallest gain each row's interval detects with 80% power (alpha 0.05, from the row's own "
                     f"seed spread and test set) runs {spread}; {UNDETECTABLE} marks gains below their row's figure.")
        return text


def _retrained_text(earlier: Mapping[Key, list[CellRecord]]) -> str | None:
    """What the section says of distilled cells whose teacher was trained again after they learned from it."""
    cells = [r for rs in earlier.values() for r in rs]
    if not cells:
        return None
    rows = sorted({f"{k[0]} from {k[1]}" for k, rs in earlier.items() if rs})
    return (f"{count(len(cells), 'distilled cell')} ({', '.join(rows)}) learned from an earlier checkpoint of "
            f"{'its teacher' if len(cells) == 1 else 'their teacher'} than the one the teachers table shows: the "
            "teacher was trained again afterwards (its checkpoint was lost or damaged, and training the same cell "
            "on another machine gives other weights). Their accuracy and gain over label-only stand as measured; "
            "the teacher's row, its margin above and the teacher-student agreement of their explanations are the "
            f"retrained checkpoint's. {RETRAINED_TEACHER} marks their rows")


def seed_spread_text(records: Sequence[CellRecord]) -> str | None:
    """``test accuracy per seed 74.0 / 70.9 / 89.4% (sd 9.9 pp)``: the label-only spread every gain's CI counts.

    A reader who sees a wide gain CI should find its cause beside the
    baseline it is measured against. None for one seed.
    """
    if len(records) < 2:
        return None
    acc = sorted((r.seed, 100 * float(r.metrics["accuracy"])) for r in records)
    sd = float(np.std([a for _, a in acc], ddof=1))
    return (f"test accuracy per seed {' / '.join(f'{a:.1f}' for _, a in acc)}% (sd {sd:.1f} pp), a spread every "
            "gain's and margin's CI counts")


def margin_verdict(margin: Mapping[str, Any] | None) -> str:
    """Plain words for a teacher's margin over the label-only student, from its paired 95% CI.

    Over several label-only seeds the CI counts their spread (see
    :func:`medkd_bench.evaluate.stats.paired_difference`); over one, only test
    images, and the verdict says so.
    """
    if margin is None:
        return "no label-only student to compare with"
    if not margin.get("ci"):
        return "not tested (no per-image test predictions stored)"
    lo, hi = margin["ci"]
    one_seed = ("" if margin.get("ci_basis") == SEEDS_AND_IMAGES else
                " (one label-only seed: the CI covers test images, not training noise)")
    if lo > 0:
        return "worth distilling from: beats the label-only student, CI above zero" + one_seed
    if hi < 0:
        return ("less accurate than the label-only student, CI below zero: distilling from it is expected to hurt"
                + one_seed)
    return "not shown to beat the label-only student (CI includes zero)"


def teacher_design_text(done: Sequence[CellRecord]) -> str | None:
    """How teachers and student seeds relate on a page: one fixed teacher, a teacher per seed, or a mix.

    A fixed teacher means the seed spread of the students is training noise of
    the students alone; a teacher per seed includes the teacher's own.
    """
    teacher_seeds = sorted({r.seed for r in done if r.method == "teacher"})
    student_seeds = sorted({r.seed for r in done if r.method != "teacher"})
    if not teacher_seeds or len(student_seeds) < 2:
        return None
    if len(teacher_seeds) == 1:
        return (f"one per dataset (seed {teacher_seeds[0]}), distilled into every student seed: a fixed teacher, "
                "as mdistiller and torchdistill ship one trained teacher, so the spread across seeds is the "
                "students' own")
    if teacher_seeds == student_seeds:
        return "one per seed (`--teacher-seeds`): each student seed distils the teacher trained with its seed"
    return (f"seeds {', '.join(map(str, teacher_seeds))} (`--teacher-seeds {len(teacher_seeds)}`); student seeds "
            "take them in turn")


def training_images_text(done: Sequence[CellRecord]) -> str | None:
    """How many training images teachers and students had, where the dataset gives teachers more.

    A teacher trained on its dataset's teacher split (``DatasetSpec.teacher_split``) has seen the
    students' images and more: the page must say so, since its margin over the label-only student is
    then partly data, as a real teacher's (pretrained on a larger corpus) is. None where every model
    had the same images, or where cells predate the record (no ``n_train``).
    """
    teachers = sorted({int(r.metrics["n_train"]) for r in done if r.method == "teacher" and "n_train" in r.metrics})
    students = sorted({int(r.metrics["n_train"]) for r in done if r.method != "teacher" and "n_train" in r.metrics})
    if not teachers or not students or teachers == students:
        return None
    return (f"teachers {', '.join(f'{n:,}' for n in teachers)}, students {', '.join(f'{n:,}' for n in students)}. "
            "A teacher trains on its dataset's teacher split: the students' training images and more of their "
            "kind (never validation or test), standing in for the larger corpus a real teacher has seen (the "
            "source study's teachers are ImageNet-pretrained). Students, and every comparison between them, "
            "see only their own; `--dataset-option NAME.teacher_train_factor=1` trains teachers on those alone")


def _undistilled(teacher_keys: list[Key], distilled: list[Key]) -> str:
    """``; no distilled rows yet from vgg19``: teachers on the page whose students are not in the store.

    A reference run made in parts publishes a teacher before its students; without this line its
    missing column in the method summary reads as if it had been left out of the design.
    """
    missing = sorted({k[1] for k in teacher_keys} - {k[1] for k in distilled})
    return f"; no distilled rows yet from {', '.join(missing)}" if missing else ""
