"""Every table the README and docs quote is its program's record (docs/results/), verbatim."""

import json
import os

import pytest

from experiments import regenerate


def test_every_quoted_table_is_its_record():
  assert regenerate.stale() == []


@pytest.mark.parametrize("source", regenerate.SOURCES, ids=lambda s: s.name)
def test_every_source_is_quoted_and_recorded_from_its_command(source):
  quoted = [t for doc in regenerate.DOCS for name, t, _ in regenerate.blocks(regenerate.read(doc))
            if name == source.name]
  assert quoted, f"{source.name} is quoted nowhere"
  with open(source.record) as f:
    record = json.load(f)
  assert record["command"] == source.command
  assert record["provenance"]["versions"]["jax"]
  for _, target in source.figures:
    assert os.path.exists(os.path.join(regenerate.ROOT, target))


def test_a_changed_block_is_reported(tmp_path, monkeypatch):
  doc = tmp_path / "doc.md"
  record = tmp_path / "r.json"
  record.write_text(json.dumps({"tables": {"t": "| a |\n|---|\n| 1 |"}}))
  doc.write_text("x\n<!-- table r/t -->\n| a |\n|---|\n| 2 |\n<!-- end table -->\ny\n")
  source = regenerate.Source("r", "m", 1)
  monkeypatch.setattr(regenerate, "ROOT", str(tmp_path))
  monkeypatch.setattr(regenerate, "DOCS", ("doc.md",))
  monkeypatch.setattr(regenerate.Source, "record", property(lambda s: str(record)))
  assert regenerate.stale([source]) == [f"doc.md: block r/t differs from {record}"]
  regenerate.rewrite("doc.md", [source])
  assert regenerate.stale([source]) == []
  assert doc.read_text() == "x\n<!-- table r/t -->\n| a |\n|---|\n| 1 |\n<!-- end table -->\ny\n"
