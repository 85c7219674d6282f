"""The residential classes' colours: one definition for every renderer.

An analyst sees the buildings in two places: the run's report (matplotlib
maps) and desktop GIS (the QGIS style that ``footprints export`` writes
into the GeoPackage and beside every export). Both draw the classes from
:data:`CLASS_STYLES`, so a residential building has the same colour in
the report's legend and in QGIS, and the two cannot drift.

Example: ``RESIDENTIAL.colour`` -> ``"#d73027"``, ``RESIDENTIAL.rgb`` ->
``"215,48,39"`` (QGIS' colour syntax).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ClassStyle:
    """One class of the categorized style.

    Attributes:
        key: The report's category name (``residential``, ...).
        value: The QGIS category's value of ``to_int("is_residential")``
            (``"1"``, ``"0"``; ``""`` catches null and missing).
        label: Legend text, the same in the report and in QGIS.
        colour: Fill colour, ``#rrggbb``.
    """

    key: str
    value: str
    label: str
    colour: str

    @property
    def rgb(self) -> str:
        """The colour as QGIS writes it: ``"r,g,b"``."""
        return ",".join(str(int(self.colour[i : i + 2], 16)) for i in (1, 3, 5))


RESIDENTIAL = ClassStyle("residential", "1", "residential", "#d73027")
NON_RESIDENTIAL = ClassStyle("non_residential", "0", "non-residential", "#4575b4")
NOT_CLASSIFIED = ClassStyle("not_classified", "", "not classified", "#a0a0a0")

#: The classes in legend order.
CLASS_STYLES = (RESIDENTIAL, NON_RESIDENTIAL, NOT_CLASSIFIED)
#: Opacity of the fills (QGIS symbol alpha; the report's fills use it too).
FILL_OPACITY = 0.6
