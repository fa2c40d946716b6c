"""benchmarks/publish_reference.py: a reference run's done cells, and only they, become the committed pages."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def publish(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import publish_reference

    return publish_reference.main


def test_only_done_cells_their_panels_and_a_store_rendered_page_are_published(publish, quick_run, tmp_path):
    work, boards, out = quick_run / "work", quick_run / "boards", tmp_path / "published"
    with sqlite3.connect(work / "runs.sqlite") as con:  # a cell still training when the part is published
        row = con.execute("SELECT * FROM cells WHERE method = 'kd'").fetchone()
        cols = [d[1] for d in con.execute("PRAGMA table_info(cells)")]
        running = dict(zip(cols, row, strict=True)) | {"hash": "0" * 16, "seed": 1, "status": "running", "metrics": None}
        con.execute(f"INSERT INTO cells ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", list(running.values()))
        con.execute("INSERT INTO explanations VALUES (?, 'grad-cam', 2, 0, 'done', '{}', ?, NULL, 0, NULL)",
                    ("0" * 16, json.dumps({"panel": "panels/synthetic-cxr/grad-cam/running.png"})))
        con.execute("INSERT INTO runs (settings, started_at) VALUES ('{}', 0)")
        con.execute("INSERT INTO run_cells VALUES (last_insert_rowid(), ?)", ("0" * 16,))
    stale = out / "panels" / "synthetic-cxr" / "grad-cam" / "an-earlier-cell.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\x89PNG")

    assert publish(["--from", str(work), "--panels", str(boards), "--to", str(out)]) == 0

    con = sqlite3.connect(out / "store" / "runs.sqlite")
    assert {s for (s,) in con.execute("SELECT status FROM cells")} == {"done"}
    assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM explanations WHERE cell_hash = ?", ("0" * 16,)).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM runs r WHERE NOT EXISTS "
                       "(SELECT 1 FROM run_cells c WHERE c.run_id = r.id)").fetchone()[0] == 0
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
    page = (out / "synthetic-cxr.md").read_text()
    linked = set(re.findall(r"panels/synthetic-cxr/[\w-]+/[\w-]+\.png", page))
    assert linked, "the quick run's KD cell is explained with panels"
    assert all((out / rel).read_bytes() == (boards / rel).read_bytes() for rel in linked)
    assert {p.relative_to(out).as_posix() for p in (out / "panels").glob("*/*/*.png")} == linked
    assert not stale.exists()
    assert "visformer-s" in page and (out / "results.csv").is_file()
    assert not (out / ".medkd-work-dir.json").exists()


def test_a_part_run_on_a_new_machine_adds_its_cells_to_those_published_before(publish, quick_run, tmp_path):
    """A replaced machine takes its store with it: the next part starts from an empty one, and publishing
    it must not drop what earlier parts published. The run's own copy of a cell wins (it may be a retrain)."""
    work, boards, out = quick_run / "work", quick_run / "boards", tmp_path / "published"
    assert publish(["--from", str(work), "--panels", str(boards), "--to", str(out)]) == 0
    con = sqlite3.connect(out / "store" / "runs.sqlite")
    before = {h: (m, json.loads(metrics)) for h, m, metrics in con.execute("SELECT hash, method, metrics FROM cells")}
    explained_before = con.execute("SELECT count(*) FROM explanations").fetchone()[0]
    con.close()

    part = tmp_path / "part" / "runs.sqlite"  # the next part: the baseline trained again, a new seed of KD
    part.parent.mkdir()
    shutil.copyfile(work / "runs.sqlite", part)
    with sqlite3.connect(part) as con:
        teacher, baseline, kd = (con.execute("SELECT hash FROM cells WHERE method = ?", (m,)).fetchone()[0]
                                 for m in ("teacher", "label-only", "kd"))
        con.execute("DELETE FROM cells WHERE hash = ?", (teacher,))
        con.execute("UPDATE cells SET metrics = json_set(metrics, '$.accuracy', 0.125) WHERE hash = ?", (baseline,))
        con.execute("UPDATE cells SET hash = ?, seed = 1 WHERE hash = ?", ("f" * 16, kd))
        con.execute("UPDATE explanations SET cell_hash = ? WHERE cell_hash = ?", ("f" * 16, kd))
        con.execute("UPDATE run_cells SET cell_hash = ? WHERE cell_hash = ?", ("f" * 16, kd))

    assert publish(["--from", str(part.parent), "--panels", str(boards), "--to", str(out)]) == 0

    con = sqlite3.connect(out / "store" / "runs.sqlite")
    after = {h: (m, json.loads(metrics)) for h, m, metrics in con.execute("SELECT hash, method, metrics FROM cells")}
    assert set(after) == set(before) | {"f" * 16}
    assert after[teacher] == before[teacher] and after[kd] == before[kd]  # published earlier, kept as they were
    assert after[baseline][1]["accuracy"] == 0.125  # the run's copy wins
    assert con.execute("SELECT count(*) FROM explanations WHERE cell_hash = ?", (kd,)).fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM explanations").fetchone()[0] > explained_before
    assert con.execute("SELECT count(*) FROM run_cells WHERE run_id NOT IN (SELECT id FROM runs)").fetchone()[0] == 0
    assert {h for (h,) in con.execute("SELECT cell_hash FROM run_cells")} == set(after)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
    assert not list((out / "store").glob("runs.sqlite-*"))  # no -wal or -shm left beside the committed file
    assert "visformer-s" in (out / "synthetic-cxr.md").read_text()
