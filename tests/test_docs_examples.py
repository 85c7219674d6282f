"""The worked examples in docs/querying.md run against a real `footprints score` output."""

import os
import re

import pytest
import shapely
from score_helpers import chip_record, save_classifier, write_shards

from footprints import cli

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "querying.md")


def python_blocks(path: str) -> list[str]:
    text = open(path, encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def score_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    records = []
    for i in range(60):
        x, y = 500_000 + 20 * (i % 10), 4_650_000 - 20 * (i // 10)
        records.append(chip_record(f"fp-{i:03d}", (i * 37) % 256,
                                   region="county-a" if i < 35 else "county-b",
                                   wkb=shapely.box(x, y, x + 12, y + 9).wkb, crs="EPSG:32615",
                                   label=i % 2))
    write_shards(str(root / "chips"), records, num_shards=2)
    model = save_classifier(str(root / "model"))
    out = root / "out"
    code = cli.main(["score", "--chips", str(root / "chips" / "*.tfrecord"), "--model",
                     model,
                     "--residential-fraction", "0.4", "--output", str(out)])
    assert code == 0
    return str(out)


def test_querying_doc_has_duckdb_and_geopandas_examples():
    blocks = python_blocks(DOC)
    assert any("duckdb" in b for b in blocks) and any("geopandas" in b for b in blocks)


def test_every_python_example_in_querying_doc_runs(score_output, capsys):
    namespace = {"OUTPUT": score_output}
    for block in python_blocks(DOC):
        exec(compile(block, DOC, "exec"), namespace)  # noqa: S102 - our own docs
    out = capsys.readouterr().out
    assert "county-a: 14 of 35 residential" in out  # floor(0.4 * 35 + 0.5)
    assert "county-b: 10 of 25 residential" in out
    assert "CRS: EPSG 32615 footprints: 60" in out
