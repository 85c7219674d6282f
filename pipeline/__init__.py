"""Beam pipelines of footprints and their transforms, one folder per stage.

``sources`` read inputs, ``writers`` write outputs, and one module per job
(``prepare``, ``score``, ``segment``) wires the stages together. The modules
stand on floors (values, stage pieces, shared composites, jobs) and import
only downwards: docs/architecture.md, "Floors of pipeline/", and
``tools/import_graph.py``.
"""
