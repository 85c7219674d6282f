"""footprints: residential or not, and where, for every building in an area.

This package is the floor every other layer stands on, and it imports none of
them: the data and model contracts (:mod:`footprints.contracts`: chip records,
model signatures, output tables) and the exception hierarchy with its exit
codes (:mod:`footprints.errors`). The Beam pipelines (``pipeline``) and the
Keras training code (``model_training``) build on it; the application on top
(``footprints_app``: the ``footprints`` command line, run reports and the
synthetic sample area) uses all three.
"""

__version__ = "0.1.0"
