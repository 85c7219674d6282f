"""The "two ids of a building" join of docs/querying.md, on a score and a segment run of one area.

``score`` knows each building by the id the user gave its footprint
(``fp-000``); ``segment`` by the id of the outline it traced
(``<quadkey>-<hash>``). Both runs here cover the same two state-plane tiles
of tests/table_fixtures.py, whose three buildings (one across the tiles'
edge) are known exactly, so the join's answer is known without it: each
given footprint pairs with the traced footprint whose centroid lies in it.
"""

import os
import re

import pytest
import shapely
from raster_fixtures import write_footprints
from score_helpers import save_classifier
from table_fixtures import FEET, FT, ORIGIN, classified_run

from footprints_app import cli

pytestmark = pytest.mark.slow

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "querying.md")


def _buildings():
    """The tiles' bright rectangles (rows, columns of tests/table_fixtures.py) in feet."""
    x, y = ORIGIN
    return {
        "fp-000": shapely.box(x + 10 * FT, y - 40 * FT, x + 50 * FT, y - 10 * FT),
        "fp-001": shapely.box(x + 70 * FT, y - 90 * FT, x + 130 * FT, y - 60 * FT),  # both tiles
        "fp-002": shapely.box(x + 140 * FT, y - 50 * FT, x + 180 * FT, y - 20 * FT),
    }


@pytest.fixture(scope="module")
def same_area(tmp_path_factory):
    root = tmp_path_factory.mktemp("join")
    classified_run(root, root / "segment")  # also writes root/tiles
    given = _buildings()
    write_footprints(root / "given.gpkg", list(given.values()), list(given), crs=FEET)
    args = ["--rasters", str(root / "tiles" / "*.tif"), "--footprints", str(root / "given.gpkg")]
    prefix = str(root / "chips" / "area")
    assert cli.main(["prepare", *args, "--id-field", "id", "--output", prefix]) == 0
    model = save_classifier(str(root / "classifier"), "brightness")
    assert (
        cli.main(
            [
                "score",
                "--chips",
                f"{prefix}-*-of-*.tfrecord",
                "--model",
                model,
                "--residential-fraction",
                "0.5",
                "--output",
                str(root / "score"),
            ]
        )
        == 0
    )
    return str(root / "score"), str(root / "segment")


def test_the_documented_spatial_join_pairs_each_given_footprint_with_its_traced_one(same_area):
    import pyarrow.parquet as pq
    import pyproj

    text = open(DOC, encoding="utf-8").read()
    section = text[text.index("## Joining the two ids of a building") :]
    [block] = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace = {"OUTPUT": same_area[0], "SEGMENT": same_area[1]}
    exec(compile(block, "querying.md (join)", "exec"), namespace)  # noqa: S102
    both = namespace["both"]
    # The answer without the join: the traced footprint whose centroid is in each building.
    traced = pq.read_table(os.path.join(same_area[1], "classified")).to_pylist()
    to_feet = pyproj.Transformer.from_crs("EPSG:4326", FEET, always_xy=True)
    expected = {}
    for fid, building in _buildings().items():
        for row in traced:
            x, y = to_feet.transform(row["centroid_lon"], row["centroid_lat"])
            if building.contains(shapely.Point(x, y)):
                expected[fid] = row["footprint_id"]
    assert len(expected) == 3
    got = dict(zip(both["footprint_id_chip"], both["footprint_id_traced"], strict=True))
    assert got == expected
    assert (both["iou"] > 0.8).all()  # traced from clean rectangles, not simplified
