"""Validating a footprints STAC catalogue offline, with pystac (issue 23).

:func:`offline_validator` is pystac's JSON-schema validator with every
schema from a local source, never the web: the STAC core and GeoJSON
schemas from the installed pystac wheel (it ships them,
``pystac.validation.local_validator``), the footprints extension from this
repository (``pipeline/writers/schemas/``). No package on PyPI ships the
projection (v2.0.0) and raster (v1.1.0) extension schemas (checked: pystac
and its ``pystac-ext-*`` packages, stac-validator, stac-valid,
stac-pydantic, stac-pydantic-extensions), so those two are listed in
``unchecked`` instead of being fetched; any other schema not at hand fails
the validation.
"""

from __future__ import annotations

EXTERNAL = (
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
)


def offline_validator(unchecked_ok=EXTERNAL):
    """A pystac validator that reads every schema locally (see the module docstring)."""
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    from pipeline.writers.stac import EXTENSION, extension_schema

    class OfflineValidator(JsonSchemaSTACValidator):
        def __init__(self):
            super().__init__()
            self.schema_cache[EXTENSION] = extension_schema()
            self.unchecked: set[str] = set()

        def validate_extension(
            self, stac_dict, stac_object_type, stac_version, extension_id, href=None
        ):
            if extension_id not in self.schema_cache and extension_id in unchecked_ok:
                self.unchecked.add(extension_id)
                return None
            return super().validate_extension(
                stac_dict, stac_object_type, stac_version, extension_id, href
            )

        def _get_schema(self, schema_uri):
            if schema_uri not in self.schema_cache:
                raise AssertionError(f"schema {schema_uri} is not available offline")
            return self.schema_cache[schema_uri]

    return OfflineValidator()


def closed_network(monkeypatch) -> None:
    """Any socket connection fails the test: nothing may be fetched."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
