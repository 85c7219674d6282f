"""Settings of the scoring job (``footprints score``), without Beam.

:class:`ScoreSettings` holds every setting with its default and checks each
value rule once, on construction; :class:`pipeline.score.ScoreConfig` adds
the checks that read the inputs. The command's flags are declared from the
fields (:mod:`pipeline.settings`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from footprints.errors import ConfigError
from pipeline import settings as s
from pipeline.runtimes import MODEL_FORMATS
from pipeline.settings import FolderOutput, check_batch_sizes

if TYPE_CHECKING:
    from pipeline.thresholds.fractions import RegionFractions

#: The default classifier batch. On CPU, 32 chips of 96 px keep a batch's activations in
#: cache: whole ``footprints score`` runs were 1.09x (small CNN) and 1.09x (MobileNetV2)
#: faster than at 64 on the 2-core development machine (benchmarks/README.md). On a GPU
#: pass a larger ``--batch-size`` (256 or more).
CPU_BATCH_SIZE = 32

#: Default decode limit: the most pixels a chip's image or mask may declare
#: (``--max-chip-pixels``). 4096 x 4096 is far above any chip ``prepare`` cuts
#: (a 200 m building at 0.15 m pixels is about 2,000 px wide with its margin),
#: and decodes in about 200 MB as float32 RGB.
MAX_CHIP_PIXELS = 4096 * 4096

#: Default rank error of the quantile sketch, as a fraction of N (docs/scoring.md).
DEFAULT_EPSILON = 1e-3


def check_epsilon(epsilon: float) -> None:
    """Raises ConfigError unless the quantile sketch's rank error is in (0, 0.1]."""
    if not 0 < epsilon <= 0.1:
        raise ConfigError(
            f"--quantile-epsilon {epsilon!r} must be in (0, 0.1]; the default "
            f"{DEFAULT_EPSILON} suits regions up to billions of footprints"
        )


@dataclasses.dataclass(frozen=True)
class ScoreSettings(FolderOutput):
    """The settings of ``footprints score``, each value checked on construction.

    The field defaults are the command's defaults (its flags are declared
    from these fields).
    """

    chips: str
    model_dir: str
    #: The target fraction per region (the thresholds sit a floor above the
    #: settings: the type is imported for the type checker only).
    fractions: RegionFractions
    output: str
    batch_size: int = s.batch_size_flag(CPU_BATCH_SIZE, "chips")
    min_batch_size: int | None = s.min_batch_size_flag()
    model_format: str = s.flag(
        "savedmodel",
        "savedmodel: TF2 signature (default); tfx: tfx-bsl handler for TFX-trained models",
        choices=MODEL_FORMATS,
    )
    accelerator: str | None = s.accelerator_flag(
        "the inference step", "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    )
    csv: bool = s.csv_flag("also write OUTPUT/scores.csv")
    bigquery_table: str | None = s.bigquery_table_flag(
        "also load the scores into BigQuery (replaces the table)"
    )
    run_id: str | None = s.run_id_flag(None, "id written on every row (default: generated)")
    model_id: str | None = s.flag(
        None, "model id for every row (default: model card, else directory name and hash)"
    )
    epsilon: float = s.flag(
        DEFAULT_EPSILON,
        "rank error of the quantile sketch (default: %(default)s); "
        "percentiles are within 100*(E + 1/(2(Q-1))) points",
        name="--quantile-epsilon",
        metavar="E",
    )
    num_shards: int = s.flag(1, "files in scores/ (0: the runner decides; default: %(default)s)")
    crs: str | None = s.output_crs_flag(
        "--crs",
        "CRS of the geometry column, e.g. EPSG:4326 for BigQuery (default: the chips' CRS)",
    )
    model_copies: int | None = s.flag(
        None,
        "models loaded per machine and shared by all its worker processes "
        "(one per GPU; default: one per process, or --accelerator's GPU count)",
        metavar="N",
        type=int,
    )
    serving_graph: str = s.serving_graph_flag()
    max_chip_pixels: int = s.flag(
        MAX_CHIP_PIXELS,
        "decode limit: a chip whose image declares more pixels (width x height) is "
        "dead-lettered (image_too_large) before decoding (default: %(default)s, 4096 x 4096)",
        metavar="N",
    )
    runtime: str = s.runtime_flag()
    int8: bool = s.int8_flag()
    allow_inexact_int8: bool = s.allow_inexact_int8_flag()

    def __post_init__(self) -> None:
        check_batch_sizes(self.batch_size, self.min_batch_size)
        check_epsilon(self.epsilon)
        if self.max_chip_pixels < 1:
            raise ConfigError(
                f"--max-chip-pixels {self.max_chip_pixels} must be 1 or more; it is the "
                "most pixels (width x height) a chip's image may declare "
                f"(default {MAX_CHIP_PIXELS})"
            )
        if self.num_shards < 0:
            raise ConfigError("--num-shards must be 0 (runner decides) or more")
        if self.model_format not in MODEL_FORMATS:
            raise ConfigError(f"--model-format must be one of {MODEL_FORMATS}")
        s.check_serving_graph(self.serving_graph)
        if self.model_copies is not None and self.model_copies < 1:
            raise ConfigError(
                f"--model-copies {self.model_copies} must be 1 or more (one per GPU is usual); "
                "leave it out to load one model per worker process"
            )
