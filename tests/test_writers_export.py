"""The table an export reads, and the QGIS style beside it (``pipeline.writers.export``)."""

import xml.etree.ElementTree as ET

import pytest

from footprints.errors import ConfigError
from pipeline.writers.export import source_table, style_qml


def test_source_table_prefers_classified_and_needs_parquet_files(tmp_path):
    (tmp_path / "footprints").mkdir()
    (tmp_path / "footprints" / "part-00000-of-00001.parquet").write_bytes(b"")
    assert source_table(str(tmp_path)) == str(tmp_path / "footprints")
    (tmp_path / "classified").mkdir()  # empty: an unfinished run's folder does not count
    assert source_table(str(tmp_path)) == str(tmp_path / "footprints")
    (tmp_path / "classified" / "part-00000-of-00001.parquet").write_bytes(b"")
    assert source_table(str(tmp_path)) == str(tmp_path / "classified")


def test_source_table_of_a_folder_without_tables_says_what_to_pass(tmp_path):
    (tmp_path / "scores").mkdir()
    with pytest.raises(ConfigError, match="--output folder of a finished `footprints segment`"):
        source_table(str(tmp_path))


def test_style_is_valid_qml_with_one_category_and_symbol_each():
    root = ET.fromstring(style_qml("is_residential"))
    renderer = root.find("renderer-v2")
    assert renderer is not None and renderer.get("type") == "categorizedSymbol"
    assert "is_residential" in renderer.get("attr")
    categories = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label")) for c in categories] == [
        ("1", "residential"),
        ("0", "non-residential"),
        ("", "not classified"),
    ]
    symbols = {s.get("name") for s in renderer.findall("symbols/symbol")}
    assert symbols == {c.get("symbol") for c in categories}


def test_style_escapes_the_field_name_for_xml_and_for_the_expression():
    # Issue 23: text interpolated into the style XML is escaped, so a field
    # named with quotes or angle brackets still gives a valid QML document.
    field = 'class "A" <b> & c'
    renderer = ET.fromstring(style_qml(field)).find("renderer-v2")
    assert renderer.get("attr") == 'to_int("class ""A"" <b> & c")'
