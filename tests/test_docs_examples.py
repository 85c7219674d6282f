"""The worked examples in docs/querying.md and docs/data-dictionary.md run on real outputs.

``OUTPUT`` is a `footprints score` run (UTM polygons); ``SEGMENT`` is, in
turn, a demo-like `footprints segment --classifier` run on UTM tiles with
its tables in UTM, and a `--output-crs EPSG:4326` run over state-plane
tiles (tests/table_fixtures.py): the two coordinate routes the page
documents. Every Python block of a page runs verbatim, in order, in one
namespace, as a reader would paste them, and each asserts it found rows
(issue 23: the lon/lat window found none on the demo's UTM tables).
"""

import os
import re

import pytest
import shapely
from score_helpers import chip_record, save_classifier, write_shards
from table_fixtures import classified_run, utm_run

from footprints_app import cli

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")
DOC = os.path.join(DOCS, "querying.md")
DICTIONARY = os.path.join(DOCS, "data-dictionary.md")


def python_blocks(path: str) -> list[str]:
    text = open(path, encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def score_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    records = []
    for i in range(60):
        x, y = 500_000 + 20 * (i % 10), 4_650_000 - 20 * (i // 10)
        records.append(
            chip_record(
                f"fp-{i:03d}",
                (i * 37) % 256,
                region="county-a" if i < 35 else "county-b",
                wkb=shapely.box(x, y, x + 12, y + 9).wkb,
                crs="EPSG:32615",
                label=i % 2,
            )
        )
    write_shards(str(root / "chips"), records, num_shards=2)
    model = save_classifier(str(root / "model"))
    out = root / "out"
    code = cli.main(
        [
            "score",
            "--chips",
            str(root / "chips" / "*.tfrecord"),
            "--model",
            model,
            "--residential-fraction",
            "0.4",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    return str(out)


@pytest.fixture(scope="module")
def lonlat_segment(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs-segment")
    classified_run(root, root / "out")
    return str(root / "out")


@pytest.fixture(scope="module")
def utm_segment(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs-segment-utm")
    utm_run(root, root / "out")
    return str(root / "out")


def test_querying_doc_has_duckdb_geopandas_pyarrow_and_bigquery_examples():
    blocks = python_blocks(DOC)
    for reader in ("duckdb", "geopandas", "pyarrow", "bigquery.json"):
        assert any(reader in b for b in blocks), reader
    text = open(DOC, encoding="utf-8").read()
    assert "bq load --source_format=PARQUET" in text and "bq mk --table" in text


#: What each route prints: (classified line, schema line, table CRS line).
ROUTES = {
    "utm": ("classified CRS: EPSG 32615 buildings: 4", "BYTES DATE BOOL RECORD", "EPSG:32615"),
    "lonlat": ("classified CRS: EPSG 4326 buildings: 3", "GEOGRAPHY DATE BOOL RECORD", "EPSG:4326"),
}


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_python_example_in_querying_doc_runs(score_output, route, request, capsys):
    segment = request.getfixturevalue(f"{route}_segment")
    namespace = {"OUTPUT": score_output, "SEGMENT": segment}
    for block in python_blocks(DOC):
        exec(compile(block, DOC, "exec"), namespace)  # noqa: S102 - our own docs
    out = capsys.readouterr().out
    assert "county-a: 14 of 35 residential" in out  # floor(0.4 * 35 + 0.5)
    assert "county-b: 10 of 25 residential" in out
    assert "CRS: EPSG 32615 footprints: 60" in out
    assert "GEOMETRY POLYGON" in out
    classified, schema, crs = ROUTES[route]
    assert classified in out and schema in out and f"table CRS: {crs}" in out
    assert re.search(r"^[1-9]\d* buildings centred in the window$", out, re.M)
    assert re.search(r"^[1-9]\d* buildings in the window$", out, re.M)
    assert re.search(r"^[1-9]\d* buildings in the window \(pyarrow\)$", out, re.M)


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_python_example_in_the_data_dictionary_runs(route, request, capsys):
    blocks = python_blocks(DICTIONARY)
    assert blocks
    namespace = {"SEGMENT": request.getfixturevalue(f"{route}_segment")}
    for block in blocks:
        exec(compile(block, DICTIONARY, "exec"), namespace)  # noqa: S102 - our own docs
    assert re.search(
        r"^1 band: building_probability p 0\.0 to 1\.00$", capsys.readouterr().out, re.M
    )
