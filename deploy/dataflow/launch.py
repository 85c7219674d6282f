r"""Submits ``footprints score`` or ``segment`` to Dataflow, directly or as a Flex Template.

Two ways to start the same job::

    # direct: this machine builds the job graph and submits it (needs this
    # package installed locally, the same Beam and Python as the image)
    python deploy/dataflow/launch.py direct score --project P --region us-central1 \
        --bucket gs://B --image REGION-docker.pkg.dev/P/footprints/worker:TAG -- \
        --chips 'gs://B/chips/*.tfrecord.gz' --model gs://B/models/classifier \
        --residential-fraction 0.35 --output gs://B/runs/state-1

    # template: Dataflow builds the graph in the image (needs only gcloud)
    python deploy/dataflow/launch.py template score --project P --region us-central1 \
        --bucket gs://B --image ... --template gs://B/templates/score.json -- \
        chips='gs://B/chips/*.tfrecord.gz' model=gs://B/models/classifier \
        residential_fraction=0.35 output=gs://B/runs/state-1

``--print`` shows the command instead of running it.

GPU configuration (``--gpu l4|t4|none``, ``--gpu-mode``):

* ``right-fitting`` (default): only the inference step asks for a GPU, through
  the Beam ``accelerator`` resource hint that ``footprints --accelerator``
  puts on RunInference; Dataflow runs that step on GPU VMs of the hint's
  ``machine_type`` and every other step (reads, validation, thresholds,
  stitching, polygonizing, writes) on cheaper CPU VMs (``--cpu-machine-type``).
  Dataflow forbids the ``worker_accelerator`` service option together with
  hints, so it is not set. Each GPU VM runs one SDK process per vCPU; the
  handlers load one model per GPU in a process shared by all of them
  (RunInference ``model_copies``), so a GPU never holds eight copies.
* ``whole-job``: every worker is a GPU VM (``worker_accelerator`` service
  option and a matching ``--machine_type``), for regions or quotas where
  right fitting is not available. No hints are set (Dataflow forbids both);
  instead ``no_use_multiple_sdk_containers`` runs one SDK process per VM, so
  the model is loaded once per VM (once per process, shared by threads) and
  the GPU is not oversubscribed.

The option lists are built by :func:`beam_options` and :func:`footprints_flags`,
which the offline translation test (``tests/test_deploy_dataflow.py``) uses
too, so what is tested is what is submitted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

JOBS = ("score", "segment")
GPU_MODES = ("right-fitting", "whole-job")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """A Dataflow GPU type and the smallest machine type that carries one well."""

    accelerator_type: str
    machine_type: str

    def hint(self, count: int = 1, with_machine_type: bool = True) -> str:
        """The Beam ``accelerator`` value, e.g. ``type:nvidia-l4;count:1;install-nvidia-driver``."""
        hint = f"type:{self.accelerator_type};count:{count};install-nvidia-driver"
        return f"{hint};machine_type:{self.machine_type}" if with_machine_type else hint


#: L4 (24 GB) on G2 VMs: the best price per inference for small CNNs today;
#: T4 (16 GB) on N1 VMs: older, available in more zones.
GPUS = {
    "l4": Gpu("nvidia-l4", "g2-standard-8"),
    "t4": Gpu("nvidia-tesla-t4", "n1-standard-8"),
}

#: Batch sizes that fit the GPU's memory with the shipped models (see docs/deploy.md):
#: chips are 224 px RGB for the classifier, windows 512 px RGB for the U-Net.
BATCH_SIZES = {
    ("score", "l4"): 256,
    ("score", "t4"): 128,
    ("score", "none"): 64,
    ("segment", "l4"): 16,
    ("segment", "t4"): 8,
    ("segment", "none"): 4,
}


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a job runs on Dataflow."""

    project: str
    region: str
    bucket: str
    image: str
    gpu: str = "l4"
    gpu_mode: str = "right-fitting"
    cpu_machine_type: str = "n2-standard-4"
    max_workers: int = 50
    job_name: str | None = None

    def __post_init__(self):
        if not self.bucket.startswith("gs://"):
            raise ValueError(f"--bucket {self.bucket!r} must be a gs:// URL, e.g. gs://my-bucket")
        if self.gpu != "none" and self.gpu not in GPUS:
            raise ValueError(f"--gpu {self.gpu!r} must be one of {sorted(GPUS)} or none")
        if self.gpu_mode not in GPU_MODES:
            raise ValueError(f"--gpu-mode {self.gpu_mode!r} must be one of {GPU_MODES}")


def beam_options(target: Target) -> list[str]:
    """Beam pipeline options for a job on Dataflow (runner, image, workers, GPUs)."""
    bucket = target.bucket.rstrip("/")
    options = [
        "--runner=DataflowRunner",
        f"--project={target.project}",
        f"--region={target.region}",
        f"--temp_location={bucket}/tmp",
        f"--staging_location={bucket}/staging",
        # The image has footprints, TensorFlow and CUDA installed: nothing is
        # staged or pip-installed at worker start-up (no --setup_file).
        f"--sdk_container_image={target.image}",
        "--sdk_location=container",
        f"--max_num_workers={target.max_workers}",
        "--experiments=use_runner_v2",
    ]
    if target.job_name:
        options.append(f"--job_name={target.job_name}")
    if target.gpu == "none":
        return options + [f"--machine_type={target.cpu_machine_type}"]
    gpu = GPUS[target.gpu]
    if target.gpu_mode == "right-fitting":
        # CPU steps run on these; the GPU step gets the hint's machine type.
        return options + [f"--machine_type={target.cpu_machine_type}"]
    return options + [
        f"--machine_type={gpu.machine_type}",
        f"--dataflow_service_options=worker_accelerator={gpu.hint(with_machine_type=False)}",
        # One SDK process per VM, so one model per GPU (see the module docstring).
        "--experiments=no_use_multiple_sdk_containers",
        # One process cannot use the VM's vCPUs for Python-heavy steps; threads
        # at least overlap I/O with inference.
        "--number_of_worker_harness_threads=8",
        "--disk_size_gb=100",
    ]


def footprints_flags(job: str, target: Target) -> list[str]:
    """Flags of ``footprints JOB`` that depend on the target: accelerator and batch size."""
    flags = ["--batch-size", str(BATCH_SIZES[(job, target.gpu)])]
    if target.gpu != "none" and target.gpu_mode == "right-fitting":
        flags += ["--accelerator", GPUS[target.gpu].hint()]
    return flags


def direct_command(job: str, target: Target, job_flags: Sequence[str]) -> list[str]:
    """``footprints JOB ...`` with the Dataflow options: the direct submission.

    ``job_flags`` come last, so a user's ``--batch-size`` overrides the default.
    """
    return ["footprints", job, *footprints_flags(job, target), *job_flags, *beam_options(target)]


def template_parameters(job: str, target: Target) -> dict[str, str]:
    """Template parameters that carry the GPU and batch configuration (names as in metadata)."""
    params = {"batch_size": str(BATCH_SIZES[(job, target.gpu)])}
    if target.gpu != "none" and target.gpu_mode == "right-fitting":
        params["accelerator"] = GPUS[target.gpu].hint()
    return params


def template_command(
    job: str, target: Target, template: str, parameters: Sequence[str]
) -> list[str]:
    """``gcloud dataflow flex-template run`` for ``job``'s template spec."""
    name = target.job_name or f"footprints-{job}"
    params = template_parameters(job, target)
    params.update(p.split("=", 1) for p in parameters)
    params["sdk_container_image"] = target.image
    command = [
        "gcloud",
        "dataflow",
        "flex-template",
        "run",
        name,
        f"--project={target.project}",
        f"--region={target.region}",
        f"--template-file-gcs-location={template}",
        f"--temp-location={target.bucket.rstrip('/')}/tmp",
        f"--staging-location={target.bucket.rstrip('/')}/staging",
        f"--max-workers={target.max_workers}",
    ]
    if target.gpu == "none" or target.gpu_mode == "right-fitting":
        command.append(f"--worker-machine-type={target.cpu_machine_type}")
    else:
        gpu = GPUS[target.gpu]
        command += [
            f"--worker-machine-type={gpu.machine_type}",
            "--additional-experiments=no_use_multiple_sdk_containers,use_runner_v2",
        ]
        # Pipeline options, passed by the launcher to main.py and on to Beam.
        params["dataflow_service_options"] = (
            f"worker_accelerator={gpu.hint(with_machine_type=False)}"
        )
        params["number_of_worker_harness_threads"] = "8"
    # gcloud splits --parameters on commas; a custom delimiter keeps hints whole.
    command.append("--parameters=^~^" + "~".join(f"{k}={v}" for k, v in params.items()))
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy/dataflow/launch.py",
        description="Submit footprints score/segment to Dataflow (see docs/deploy.md).",
    )
    parser.add_argument("mode", choices=["direct", "template"])
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True, help="gs://BUCKET for temp and staging files")
    parser.add_argument("--image", required=True, help="the worker image (build.sh pushes it)")
    parser.add_argument("--gpu", default="l4", choices=[*sorted(GPUS), "none"])
    parser.add_argument("--gpu-mode", default="right-fitting", choices=GPU_MODES)
    parser.add_argument("--cpu-machine-type", default="n2-standard-4")
    parser.add_argument("--max-workers", type=int, default=50)
    parser.add_argument("--job-name")
    parser.add_argument("--template", help="gs:// path of the template spec (template mode)")
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    parser.epilog = (
        "After --: footprints flags (direct) or NAME=VALUE template parameters (template)."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Builds the command for the chosen mode and runs (or prints) it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, rest = _parser().parse_args(argv[:split]), argv[split + 1 :]
    try:
        target = Target(
            args.project,
            args.region,
            args.bucket,
            args.image,
            args.gpu,
            args.gpu_mode,
            args.cpu_machine_type,
            args.max_workers,
            args.job_name,
        )
    except ValueError as exc:
        print(f"launch.py: error: {exc}", file=sys.stderr)
        return 2
    if args.mode == "direct":
        command = direct_command(args.job, target, rest)
    else:
        if not args.template:
            print(
                "launch.py: error: template mode needs --template gs://.../JOB.json "
                "(build.sh templates writes it)",
                file=sys.stderr,
            )
            return 2
        command = template_command(args.job, target, args.template, rest)
    print(shlex.join(command), flush=True)
    if args.print:
        return 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
