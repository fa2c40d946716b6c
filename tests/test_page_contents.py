"""Leaderboard pages read top-down: contents whose links resolve on GitHub, the answer first, detail collapsed.

Headings are found with markdown-it (a CommonMark parser, as GitHub's is)
and their anchors computed here by GitHub's rules, independently of
:mod:`medkd_bench.report.contents`: a link the page writes must land on a
heading GitHub renders.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from markdown_it import MarkdownIt

from medkd_bench.registry import load_registry
from medkd_bench.report.contents import anchors, github_slug
from medkd_bench.report.leaderboard import render_all
from medkd_bench.run.store import Store
from tests.helpers import embedded_dataset_config


def gfm_anchors(page: str) -> list[tuple[int, str, str]]:
    """(level, text, anchor) per heading as GitHub renders it: github-slugger on the heading's text, de-duplicated."""
    tokens = MarkdownIt("commonmark").enable("table").parse(page)
    seen: dict[str, int] = {}
    out = []
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children if child.type in ("text", "code_inline"))
        base = slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        while slug in seen:
            seen[base] += 1
            slug = f"{base}-{seen[base]}"
        seen[slug] = 0
        out.append((int(opening.tag[1]), text, slug))
    return out


def _details_spans(page: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for match in re.finditer(r"^</?details>$", page, re.M):
        if match.group(0) == "<details>":
            start = match.start()
        elif start is not None:
            spans.append((start, match.end()))
            start = None
    return spans


def _collapsed(page: str, needle: str) -> bool:
    """Whether every occurrence of ``needle`` lies inside a <details> block."""
    spans = _details_spans(page)
    places = [m.start() for m in re.finditer(re.escape(needle), page)]
    return bool(places) and all(any(a < p < b for a, b in spans) for p in places)


def test_github_anchor_rules():
    assert github_slug("Can these comparisons be trusted?") == "can-these-comparisons-be-trusted"
    assert github_slug("Methods: ofa-595") == "methods-ofa-595"
    assert github_slug("Localisation, faithfulness and sanity") == "localisation-faithfulness-and-sanity"
    assert github_slug("Explanations: grad-cam-plus-plus") == "explanations-grad-cam-plus-plus"
    assert github_slug("ofa_search 2.0 (§ ‡)") == "ofa_search-20--"  # dots and marks dropped, spaces kept as -
    assert github_slug("Ärzte Übersicht") == "ärzte-übersicht"
    page = "# T\n\n## Panels\n\n```bash\n# not a heading\n```\n\n## Panels\n\n### Panels-1\n"
    assert [a for _, _, a in anchors(page)] == ["t", "panels", "panels-1", "panels-1-1"]
    assert anchors(page) == gfm_anchors(page)


def _per_image(labels: list[int], accuracy: float, rng: np.random.Generator) -> dict:
    preds = [int(y if rng.random() < accuracy else (y + 1) % 3) for y in labels]
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (labels, preds), 1)
    right = np.mean(np.asarray(preds) == np.asarray(labels))
    return {"accuracy": float(right), "macro_f1": float(right), "params_m": 7.6, "gmacs": 0.04, "latency_ms": 6.0,
            "throughput": 100.0, "best_epoch": 3, "n_test": len(labels), "machine": "test machine",
            "per_class_f1": {"COVID-19": 0.5, "Non-COVID": 0.6, "Normal": 0.7}, "stopped": "plateau",
            "epochs_run": 5, "test_labels": labels, "test_predictions": preds, "confusion": confusion.tolist(),
            "test_probabilities": [[0.8 if c == p else 0.1 for c in range(3)] for p in preds]}


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """Two teachers, two methods, two seeds, two explainers (so subsections repeat), one failed cell."""
    tmp = tmp_path_factory.mktemp("contents")
    registry = load_registry()
    dataset = embedded_dataset_config(registry)
    labels = [i % 3 for i in range(60)]
    rng = np.random.default_rng(0)
    summary = {"mean": 0.5, "ci": [0.4, 0.6], "n": 6}
    with Store(tmp / "runs.sqlite") as store:
        def add(h: str, method: str, teacher: str, student: str, seed: int, accuracy: float) -> None:
            config = {"dataset": dataset, "model": {"name": teacher or student, "init": "random",
                                                    "train": {"epochs": 9}}}
            if method not in ("teacher", "label-only"):
                config["distill"] = {"method": method, "revision": "1", "options": {"temperature": 4.0}}
            store.start(h, "synthetic-cxr", teacher, student, method, seed, config)
            store.finish(h, _per_image(labels, accuracy, rng), {"train_s": 5.0}, {})
            for explainer in ("grad-cam", "score-cam"):
                store.save_explanation(h, explainer, 6, seed, "done", {
                    "n_images": 6, "n_sanity": 3, "agreement": {"spearman": summary, "top20_iou": summary},
                    "localisation": {"mask": "lesion", "energy_pointing_game": summary, "chance": summary}},
                    {"panel": f"panels/synthetic-cxr/{explainer}/{teacher}__{student}__{method}.png"}
                    if method not in ("teacher", "label-only") and seed == 0 else {})

        for seed in (0, 1):
            add(f"t1-{seed}", "teacher", "visformer-s", "", seed, 0.9)
            add(f"t2-{seed}", "teacher", "vgg19", "", seed, 0.7)
            add(f"l-{seed}", "label-only", "", "ofa-595", seed, 0.6)
            for teacher, method in itertools.product(("visformer-s", "vgg19"), ("kd", "at")):
                add(f"{teacher}-{method}-{seed}", method, teacher, "ofa-595", seed,
                    0.8 if (teacher, method) == ("visformer-s", "kd") else 0.55)
        store.start("bad", "synthetic-cxr", "autoformer-v2-t", "", "teacher", 0, {"dataset": dataset})
        store.fail("bad", "RuntimeError: boom")
        written = render_all(registry, store, tmp / "boards", resamples=50)
    return written[0].read_text()


def test_every_contents_link_lands_on_a_heading_and_every_section_is_listed(page):
    top, rest = page.split("## At a glance", 1)
    assert "**On this page**" in top  # the contents come before the first section
    contents = top.split("**On this page**", 1)[1]
    rendered = {anchor for _, _, anchor in gfm_anchors(page)}
    linked = re.findall(r"\]\(#([^)]+)\)", contents)
    assert linked and set(linked) <= rendered
    sections = [anchor for level, _, anchor in gfm_anchors(page) if level in (2, 3)]
    assert linked == sections  # every section and subsection, in page order
    # Repeated subsections (one set per explainer) link to their own copies, as GitHub numbers them.
    assert "#panels" in contents and "#panels-1" in contents
    for anchor in re.findall(r"\]\(#([^)]+)\)", page):  # every in-page link on the page, not only the contents
        assert anchor in rendered, anchor


def test_the_answer_comes_first(page):
    glance = page.split("## At a glance", 1)[1].split("\n## ", 1)[0]
    teacher_row = next(line for line in page.split("## Teachers", 1)[1].splitlines() if line.startswith("| visformer-s"))
    assert f"Most accurate teacher: **visformer-s**, {teacher_row.split('|')[2].strip()} (of 2)." in glance
    # The best distilled row, its accuracy and gain as the students table shows them, and the verdict counts.
    kd_row = next(line for line in page.split("## Students", 1)[1].splitlines() if "| visformer-s | kd |" in line)
    cells = [c.strip() for c in kd_row.split("|")]
    assert f"most accurate distilled: kd from visformer-s, {cells[4]}, gain {cells[7]} pp" in glance
    assert "of its 4 distilled rows, 1 beat label-only" in glance
    assert "1 cell failed: see [Failed cells](#failed-cells)" in glance
    order = [page.index(h) for h in ("## At a glance", "pareto.png)", "## Can these comparisons be trusted?",
                                     "## Teachers", "## Students", "## Methods: ofa-595", "## Per-class F1",
                                     "## How the rows were made", "## Provenance")]
    assert order == sorted(order)
    setup = page.split("## How the rows were made", 1)[1]
    assert "- Distillation methods (the options they ran with):" in setup and "- Seeds: 0, 1." in setup
    assert "- Distillation methods" not in page.split("## Teachers", 1)[0]


def test_detail_is_collapsed_and_every_table_kept(page):
    for header in ("| model | method | COVID-19 | Non-COVID | Normal |",  # per-class F1
                   "| model | method | COVID-19: sensitivity |",  # per class, clinical
                   "| true \\ predicted | COVID-19 | Non-COVID | Normal |",  # confusion
                   "| model | method | seed | config hash |",  # per seed
                   "| teacher | method | student | Spearman, distilled |",  # agreement per cell
                   "| model | method | energy pointing game | pointing game | chance level |",  # per model
                   "![grad-cam: visformer-s -> ofa-595 (kd)"):  # the panels
        assert _collapsed(page, header), header
    for header in ("| teacher | accuracy [95% CI] |", "| student | teacher | method | accuracy [95% CI] |",
                   "| vgg19 | visformer-s | mean gain (pp) | mean rank |",
                   "| model | method | ROC AUC [95% CI] | ECE [95% CI] |", "| method | Spearman vs teacher |"):
        assert header in page and not _collapsed(page, header), header  # the summary tables stay open
    # GitHub renders markdown inside <details> only after a blank line: every summary line is followed by one.
    assert all(after == "" for after in re.findall(r"</summary>\n(.*)\n", page))


def test_a_real_runs_page_has_resolving_contents(quick_run):
    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    rendered = {anchor for _, _, anchor in gfm_anchors(page)}
    linked = re.findall(r"\]\(#([^)]+)\)", page)
    assert "explanations-eigen-cam" in linked and "panels-3" in linked  # four explainers' sections
    assert set(linked) <= rendered
