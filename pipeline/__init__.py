"""Beam pipelines of footprints and their transforms, one folder per stage.

``sources`` read inputs, ``writers`` write outputs, and one module per job
(``prepare``, ``score``, ``segment``) wires the stages together.
"""
