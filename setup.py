"""Package definition for footprints.

Plain on purpose: Dataflow and Flink workers install this file with
``--setup_file ./setup.py``, so it must not import the package or run code.
"""

import setuptools

REQUIRED = [
    "apache-beam[gcp]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    "tfx-bsl>=1.21,<1.22",
    "tensorflow-hub>=0.16,<1",
    "tensorboard>=2.21,<2.22",
    "numpy>=1.26,<3",
    "rasterio>=1.4,<1.5",
    "shapely>=2.1,<3",
    "pyproj>=3.6,<4",
    "pyogrio>=0.9,<1",
    "pyarrow>=14,<24",
    "pillow>=10,<13",
    "matplotlib>=3.8,<4",
    "pystac>=1.12,<2",
    # --runtime onnxruntime (the default where a model has model.onnx) and the ONNX copy
    # training writes beside each SavedModel. GPU images swap in onnxruntime-gpu
    # (deploy/dataflow/Dockerfile); both install the same `onnxruntime` module.
    "onnxruntime>=1.20,<2",
    "onnx>=1.17,<2",
    "tf2onnx>=1.17,<2",
    # JPEG chips decoded on --runtime onnxruntime without TensorFlow, with libjpeg set as
    # TensorFlow sets it (fast integer IDCT, fancy upsampling): the same pixels.
    "simplejpeg>=1.8,<2",
]

TEST = [
    "pytest>=8,<10",
    "hypothesis>=6.100,<7",
    "duckdb>=1.1,<3",
    "geopandas>=1.0,<2",
    "buildingregulariser>=0.2.5,<0.3",
    "geoparquet-validator>=0.2,<1",
    # pystac's JSON-schema validation (jsonschema): the STAC catalogue validated offline.
    "pystac[validation]>=1.12,<2",
    # A local GCS server for tests/test_object_storage.py (every job on gs:// paths).
    "gcp-storage-emulator>=2026.7,<2027",
    # Lint, format and type checks (`bash quickstart.sh lint`, CI, .pre-commit-config.yaml),
    # pinned to a minor version: a newer ruff or mypy may find new things in unchanged code.
    "ruff>=0.17.6,<0.18",
    "mypy>=2.4.1,<2.5",
    "pre-commit>=4.7,<4.8",
]

# `footprints segment --regularize` (right-angle footprints).
REGULARIZE = [
    "buildingregulariser>=0.2.5,<0.3",
    "geopandas>=1.0,<2",
]

setuptools.setup(
    name="footprints",
    version="0.1.0",
    description=(
        "Building footprints from aerial orthophotos: residential or not, and where, "
        "as a distributed Apache Beam batch job."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(
        include=[
            "footprints",
            "footprints.*",
            "footprints_app",
            "footprints_app.*",
            "pipeline",
            "pipeline.*",
            "model_training",
            "model_training.*",
        ]
    ),
    # The JSON schema of the STAC catalogue's footprints: fields.
    package_data={"pipeline.writers": ["schemas/*.json"]},
    install_requires=REQUIRED,
    extras_require={"test": TEST, "regularize": REGULARIZE},
    entry_points={"console_scripts": ["footprints=footprints_app.cli:console"]},
)
