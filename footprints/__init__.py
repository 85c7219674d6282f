"""footprints: residential or not, and where, for every building in an area.

The package holds what both the Beam pipelines (``pipeline``) and the Keras
training code (``model_training``) share: the data and model contracts
(:mod:`footprints.contracts`), the exception hierarchy
(:mod:`footprints.errors`), the synthetic sample area
(:mod:`footprints_app.sample_area`) and the ``footprints`` command line
(:mod:`footprints_app.cli`).
"""

__version__ = "0.1.0"
