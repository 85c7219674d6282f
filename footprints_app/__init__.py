"""The application: the ``footprints`` command line and what only it needs.

The top layer. :mod:`footprints_app.cli` and its subcommands
(:mod:`footprints_app.commands`) turn flags into the configs of ``pipeline``
and ``model_training`` jobs and run them; :mod:`footprints_app.report` draws a
run's HTML report; :mod:`footprints_app.sample_area` generates the synthetic
sample area the demo, the tests and the benchmarks run on. Imports point
down: this package may use ``pipeline``, ``model_training`` and the floor
(``footprints``), and nothing below imports it (``tests/test_layers.py``).
Building a parser imports neither Beam nor TensorFlow, so ``footprints
--help`` stays fast; each command imports its job when it runs.
"""
