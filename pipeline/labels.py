"""Class names to chip labels: which building types count as residential.

Prepare labels every chip from a class name, a folder name (``house/``) or a
footprint attribute (OpenStreetMap's ``building=*``). :class:`ClassMap`
holds the two lists and maps a name to :data:`footprints.contracts.RESIDENTIAL`,
:data:`~footprints.contracts.NON_RESIDENTIAL` or no label. Plain data, no
Beam: the ``footprints prepare`` parser takes its defaults from here while
``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses

from footprints import contracts
from footprints.errors import ConfigError
from pipeline import flags

#: OpenStreetMap ``building=*`` values (and the notebooks' folder names) by class.
DEFAULT_RESIDENTIAL = (
    "house",
    "houses",
    "detached",
    "residential",
    "apartments",
    "semidetached_house",
    "terrace",
    "bungalow",
    "cabin",
    "farm",
    "dormitory",
    "home",
    "static_caravan",
)
DEFAULT_NON_RESIDENTIAL = (
    "barn",
    "barns",
    "shed",
    "garage",
    "garages",
    "farm_auxiliary",
    "industrial",
    "commercial",
    "retail",
    "warehouse",
    "office",
    "church",
    "school",
    "greenhouse",
    "hangar",
    "stable",
    "cowshed",
    "silo",
    "carport",
    "service",
    "outbuilding",
    "non-residential",
    "non_residential",
)


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """Maps class names (folder names, attribute values) to chip labels.

    Names are compared case-insensitively; a name in neither list gives no
    label (the chip is written unlabelled and counted in the summary).
    """

    residential: tuple[str, ...] = flags.flag(
        DEFAULT_RESIDENTIAL,
        "class values (or folder names) labelled residential "
        "(default: OSM house,detached,residential,apartments,...)",
        name="--residential-classes",
        metavar="A,B,...",
        type=flags.comma_list,
    )
    non_residential: tuple[str, ...] = flags.flag(
        DEFAULT_NON_RESIDENTIAL,
        "class values labelled non-residential "
        "(default: OSM barn,shed,garage,farm_auxiliary,commercial,...)",
        name="--non-residential-classes",
        metavar="A,B,...",
        type=flags.comma_list,
    )

    def __post_init__(self) -> None:
        both = {c.lower() for c in self.residential} & {c.lower() for c in self.non_residential}
        if both:
            raise ConfigError(
                f"classes {sorted(both)} are listed as both residential and "
                "non-residential; remove them from one list"
            )

    def label_of(self, klass: str | None) -> int | None:
        """The chip label of a class name: residential, non-residential or None."""
        if klass is None:
            return None
        name = klass.strip().lower()
        if name in {c.lower() for c in self.residential}:
            return contracts.RESIDENTIAL
        if name in {c.lower() for c in self.non_residential}:
            return contracts.NON_RESIDENTIAL
        return None
