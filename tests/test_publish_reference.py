"""benchmarks/publish_reference.py: a reference run's done cells, and only they, become the committed pages."""

from __future__ import annotations

import json
import re
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
