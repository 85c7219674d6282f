"""The jobs translate for Dataflow, offline: GPU hints, container image, worker pools.

Beam's DataflowRunner with ``--dry_run`` runs every step of a submission up to
the request: runner overrides, the portable pipeline proto with one Docker
environment per distinct set of resource hints, and the ``Job`` message; it
stops before staging files or calling the service (``DataflowRunner.run_pipeline``
returns ``result.job``), so no credentials or network are needed. The worker
pool description (machine type, service options, experiments, harness images)
is built by Beam's ``apiclient.Environment`` from the same options when a job
is really created; the tests build it the same way, offline.

The Beam options come from ``deploy/dataflow/launch.py`` itself, so what is
checked here is what the launcher submits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import pytest
import shapely

from footprints_app import cli

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATAFLOW = os.path.join(ROOT, "deploy", "dataflow")
IMAGE = "us-central1-docker.pkg.dev/fake-project/footprints/worker:test"
ACCELERATOR_URN = "beam:resources:accelerator:v1"


def _load(name: str):
    """A script of deploy/dataflow as a module (deploy/ is not a package: it ships as files)."""
    spec = importlib.util.spec_from_file_location(
        f"deploy_dataflow_{name}", os.path.join(DATAFLOW, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


launch = _load("launch")
template_main = _load("main")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A classifier, chip shards, a segmenter and a tile: the real inputs config checks read."""
    import segment_helpers
    from raster_fixtures import write_geotiff

    from tests.score_helpers import chip_record, save_classifier, write_shards

    root = tmp_path_factory.mktemp("dataflow")
    write_shards(
        str(root / "chips"), [chip_record(f"fp-{i}", i * 20, region="r") for i in range(8)], 2
    )
    data, _ = segment_helpers.bright_scene(96, 96, [(10, 10, 40, 40)])
    write_geotiff(str(root / "tiles" / "t0.tif"), data)
    return {
        "chips": str(root / "chips" / "*.tfrecord"),
        "classifier": save_classifier(str(root / "classifier")),
        "segmenter": segment_helpers.save_bright_segmenter(str(root / "segmenter"), window_size=64),
        "tiles": str(root / "tiles" / "*.tif"),
        "root": root,
    }


def _target(**kwargs):
    return launch.Target("fake-project", "us-central1", "gs://fake-bucket", IMAGE, **kwargs)


def _options(target):
    from apache_beam.options.pipeline_options import PipelineOptions

    # --no_auth: no credentials are looked up; --dry_run: nothing is staged or submitted.
    return PipelineOptions([*launch.beam_options(target), "--dry_run=True", "--no_auth"])


def _parse(job: str, flags: list[str]):
    """The footprints command's own parser on ``flags``; fails if a flag is unknown to it."""
    args, unknown = cli.build_parser().parse_known_args([job, *flags])
    assert not unknown, (
        f"footprints {job} does not know {unknown}: these flags would be passed to Beam as "
        "pipeline options and silently ignored (issue 6 needs them on the job)"
    )
    return args


def _score_pipeline(inputs, target, options):
    import apache_beam as beam

    from pipeline.score import ScoreConfig, build_pipeline

    args = _parse(
        "score",
        [
            "--chips",
            inputs["chips"],
            "--model",
            inputs["classifier"],
            "--residential-fraction",
            "0.3",
            "--output",
            "gs://fake-bucket/out",
            *launch.footprints_flags("score", target),
        ],
    )
    config = ScoreConfig.create(
        chips=args.chips,
        model_dir=args.model,
        residential_fraction=args.residential_fraction,
        output=args.output,
        batch_size=args.batch_size,
        accelerator=args.accelerator,
        run_id="dry-run",
    )
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    return pipeline


def _segment_pipeline(inputs, target, options):
    import apache_beam as beam

    from footprints_app.commands.segment import config_from_args
    from pipeline.segment import build_pipeline

    args = _parse(
        "segment",
        [
            "--raster",
            inputs["tiles"],
            "--model",
            inputs["segmenter"],
            "--output",
            "gs://fake-bucket/out",
            "--run-id",
            "dry-run",
            *launch.footprints_flags("segment", target),
        ],
    )
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config_from_args(args))
    return pipeline


def _prepare_pipeline(inputs, target, options):
    import apache_beam as beam

    from pipeline import prepare

    footprints = _footprints_file(inputs)
    config = prepare.PrepareConfig.create(
        output="gs://fake-bucket/chips/area",
        rasters=inputs["tiles"],
        footprints=footprints,
        id_field="id",
    )
    pipeline = beam.Pipeline(options=options)
    prepare.build_pipeline(pipeline, config)
    return pipeline


def _footprints_file(inputs) -> str:
    from raster_fixtures import X0, Y0, write_footprints

    path = inputs["root"] / "footprints.gpkg"
    if not path.exists():
        write_footprints(path, [shapely.box(X0 + 5, Y0 - 20, X0 + 12, Y0 - 12)], ["a"])
    return str(path)


BUILDERS = {"score": _score_pipeline, "segment": _segment_pipeline, "prepare": _prepare_pipeline}


def _translate(job: str, inputs, target):
    """Runs ``job`` on DataflowRunner in dry-run mode: (pipeline proto, worker Environment)."""
    from apache_beam.runners.dataflow.internal import apiclient

    options = _options(target)
    result = BUILDERS[job](inputs, target, options).run()
    proto = result.job.proto_pipeline  # set by the runner just before it would submit
    environment = apiclient.Environment(
        [],
        options,
        apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        "gs://fake-bucket/staging/pipeline.pb",
        proto,
    )
    return proto, environment.proto


def _hinted_transforms(proto) -> dict[str, dict]:
    """Leaf transforms whose environment carries resource hints: name -> hints."""
    envs = proto.components.environments
    return {
        t.unique_name: dict(envs[t.environment_id].resource_hints)
        for t in proto.components.transforms.values()
        if t.environment_id and not t.subtransforms and envs[t.environment_id].resource_hints
    }


def _images(proto) -> set[str]:
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.utils import proto_utils

    return {
        proto_utils.parse_Bytes(env.payload, beam_runner_api_pb2.DockerPayload).container_image
        for env in proto.components.environments.values()
    }


@pytest.mark.parametrize("job", ["score", "segment"])
def test_right_fitting_puts_the_gpu_hint_on_inference_only(inputs, job):
    target = _target(gpu="l4")
    proto, environment = _translate(job, inputs, target)
    hinted = _hinted_transforms(proto)
    hint = launch.GPUS["l4"].hint().encode()
    assert hinted, f"no step of {job} carries the accelerator hint"
    # Only RunInference's inference ParDo: reads, batching, thresholds, stitching
    # and writes stay on CPU workers.
    for name, hints in hinted.items():
        assert name.endswith("RunInference/BeamML_RunInference"), name
        assert hints == {ACCELERATOR_URN: hint}
    assert _images(proto) == {IMAGE}
    pool = environment.worker_pools[0]
    assert {i.container_image for i in pool.sdk_harness_container_images} == {IMAGE}
    assert pool.machine_type == "n2-standard-4"
    # Dataflow forbids worker_accelerator together with right fitting.
    assert not [o for o in environment.service_options if "worker_accelerator" in o]


@pytest.mark.parametrize("job", ["score", "segment"])
def test_whole_job_gpu_workers_run_one_sdk_process(inputs, job):
    target = _target(gpu="t4", gpu_mode="whole-job")
    proto, environment = _translate(job, inputs, target)
    assert not _hinted_transforms(proto)
    assert _images(proto) == {IMAGE}
    pool = environment.worker_pools[0]
    assert pool.machine_type == "n1-standard-8"
    assert pool.worker_harness_container_image == IMAGE
    assert pool.num_threads_per_worker == 8
    assert list(environment.service_options) == [
        "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    ]
    assert "no_use_multiple_sdk_containers" in environment.experiments
    assert "use_multiple_sdk_containers" not in environment.experiments


def test_prepare_translates_for_cpu_workers(inputs):
    proto, environment = _translate("prepare", inputs, _target(gpu="none"))
    assert not _hinted_transforms(proto)
    assert _images(proto) == {IMAGE}
    assert environment.worker_pools[0].machine_type == "n2-standard-4"
    assert not environment.service_options


# --------------------------------------------------------------------------
# Flex Template metadata and its entry point
# --------------------------------------------------------------------------


def _metadata(job):
    with open(os.path.join(DATAFLOW, "templates", f"{job}-metadata.json")) as f:
        return json.load(f)


GOOD = {
    "chips": "gs://my-bucket/chips/area-*.tfrecord.gz",
    "model": "gs://my-bucket/models/m",
    "raster": "gs://my-bucket/orthos/*.tif",
    "output": "gs://my-bucket/runs/x",
    "residential_fraction": "0.35",
    "batch_size": "256",
    "tta": "d4",
    "accelerator": "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8",
    "csv": "true",
    "bigquery_table": "my-project:footprints.scores",
    "quantile_epsilon": "1e-3",
    "mask_threshold": "0.5",
    "output_crs": "EPSG:4326",
}
BAD = {
    "chips": "chips/*.tfrecord",
    "output": "/tmp/out",
    "residential_fraction": "1.5",
    "batch_size": "0",
    "tta": "flip",
    "accelerator": "nvidia-l4",
    "csv": "yes please",
    "bigquery_table": "just-a-table",
}


@pytest.mark.parametrize("job", ["score", "segment"])
def test_template_parameters_are_the_commands_flags(job):
    meta = _metadata(job)
    parser_actions = {
        a.option_strings[0]: a for a in template_main._subparser(job)._actions if a.option_strings
    }
    names = [p["name"] for p in meta["parameters"]]
    assert len(names) == len(set(names))
    for param in meta["parameters"]:
        flag = "--" + param["name"].replace("_", "-")
        assert flag in parser_actions, (
            f"template parameter {param['name']!r} is not a flag of footprints {job}"
        )
        assert param["isOptional"] == (not parser_actions[flag].required), param["name"]
        for regex in param.get("regexes", []):
            if param["name"] in GOOD:
                assert re.match(regex, GOOD[param["name"]]), (param["name"], regex)
            if param["name"] in BAD:
                assert not re.match(regex, BAD[param["name"]]), (param["name"], regex)
    required = {a.option_strings[0] for a in parser_actions.values() if a.required}
    assert required == {
        "--" + n.replace("_", "-")
        for n in names
        if not meta["parameters"][names.index(n)]["isOptional"]
    }


def test_template_entry_maps_parameters_to_the_command_line(inputs):
    argv = [
        "--chips=gs://b/chips/*.tfrecord",
        "--model=gs://b/m",
        "--residential_fraction=0.3",
        "--output=gs://b/out",
        "--csv=true",
        "--min_batch_size=",
        "--batch_size=256",
        "--runner=DataflowRunner",
        "--project=p",
        f"--sdk_container_image={IMAGE}",
    ]
    assert template_main.job_of(argv) == "score"
    cli_args = template_main.to_cli_args("score", argv)
    assert cli_args == [
        "score",
        "--chips",
        "gs://b/chips/*.tfrecord",
        "--model",
        "gs://b/m",
        "--residential-fraction",
        "0.3",
        "--output",
        "gs://b/out",
        "--csv",
        "--batch-size",
        "256",
        "--runner=DataflowRunner",
        "--project=p",
        f"--sdk_container_image={IMAGE}",
    ]
    args, unknown = cli.build_parser().parse_known_args(cli_args)
    assert args.csv and args.batch_size == 256 and args.min_batch_size is None
    assert unknown == ["--runner=DataflowRunner", "--project=p", f"--sdk_container_image={IMAGE}"]
    assert template_main.job_of(["--raster=gs://b/*.tif", "--model=m"]) == "segment"
    with pytest.raises(SystemExit, match="exactly one of --chips"):
        template_main.job_of(["--model=m"])


def test_launcher_commands_carry_the_gpu_configuration():
    right = launch.direct_command("segment", _target(gpu="l4"), ["--raster", "gs://b/*.tif"])
    assert right[:2] == ["footprints", "segment"]
    assert right[right.index("--accelerator") + 1] == (
        "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8"
    )
    assert not [a for a in right if "worker_accelerator" in a]
    assert right.index("--raster") > right.index("--batch-size")  # user flags win

    run = launch.template_command(
        "score",
        _target(gpu="t4", gpu_mode="whole-job"),
        "gs://b/templates/score.json",
        ["chips=gs://b/c/*"],
    )
    params = dict(p.split("=", 1) for p in run[-1].removeprefix("--parameters=^~^").split("~"))
    assert params["dataflow_service_options"] == (
        "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    )
    assert params["sdk_container_image"] == IMAGE and "accelerator" not in params
    assert "--worker-machine-type=n1-standard-8" in run
    with pytest.raises(ValueError, match="gs://"):
        launch.Target("p", "r", "bucket", IMAGE)


# --------------------------------------------------------------------------
# The documented Dataflow command lines (docs/deploy.md), exactly as written
# --------------------------------------------------------------------------


def test_documented_prepare_command_line_translates_with_region(inputs):
    """Issue 11: `--region` reached --region-field; now it reaches Beam and the job translates."""
    import shlex

    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

    from footprints_app.commands.prepare import config_from_args
    from pipeline import prepare
    from tests.test_docs_commands import documented_commands

    lines = [
        line
        for where, line in documented_commands()
        if where == os.path.join("docs", "deploy.md") and "DataflowRunner" in line
    ]
    assert lines, "docs/deploy.md documents no DataflowRunner command line"
    env = {
        "$BUCKET": "gs://fake-bucket",
        "$PROJECT": "fake-project",
        "$REGION": "us-central1",
        "$IMAGE": IMAGE,
    }
    for line in lines:
        for name, value in env.items():
            line = line.replace(name, value)
        argv = shlex.split(line)[1:]
        argv[argv.index("--rasters") + 1] = inputs["tiles"]  # headers are read locally
        argv[argv.index("--footprints") + 1] = _footprints_file(inputs)
        args, beam_args = cli.parse_command_line(argv)
        assert args.command == "prepare" and args.region_field == "county"
        options = PipelineOptions([*beam_args, "--dry_run=True", "--no_auth"])
        assert options.view_as(GoogleCloudOptions).region == "us-central1"
        # The fixture's footprints carry only `id`; config_from_args checks the
        # attribute flags against the file (test_prepare covers that check).
        args.class_field = args.region_field = None
        config = config_from_args(args)
        pipeline = beam.Pipeline(options=options)
        prepare.build_pipeline(pipeline, config)
        result = pipeline.run()
        assert result.job.options.view_as(GoogleCloudOptions).region == "us-central1"
        assert result.job.proto_pipeline.components.transforms  # translated for Dataflow


def test_documented_launcher_command_lines_parse_and_translate(inputs, capsys):
    """docs/deploy.md's `launch.py direct` lines: every flag is footprints' or Beam's."""
    import shlex

    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

    from tests.test_docs_commands import documented_commands

    lines = [
        line
        for _, line in documented_commands("python")
        if line.startswith("python deploy/dataflow/launch.py direct")
    ]
    assert lines, "docs/deploy.md documents no `launch.py direct` line"
    env = {
        "$BUCKET": "gs://fake-bucket",
        "$PROJECT": "fake-project",
        "$REGION": "us-central1",
        "$IMAGE": IMAGE,
    }
    local = {"--raster": inputs["tiles"], "--chips": inputs["chips"]}
    for line in lines:
        for name, value in env.items():
            line = line.replace(name, value)
        argv = shlex.split(line)[2:]
        argv.insert(argv.index("--"), "--print")
        assert launch.main(argv) == 0
        command = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
        assert command[0] == "footprints"
        job = command[1]
        for flag, value in local.items():
            if flag in command:
                command[command.index(flag) + 1] = value
        command[command.index("--model") + 1] = (
            inputs["segmenter"] if job == "segment" else inputs["classifier"]
        )
        args, beam_args = cli.parse_command_line(command[1:])
        options = PipelineOptions([*beam_args, "--dry_run=True", "--no_auth"])
        assert options.view_as(GoogleCloudOptions).region == "us-central1"
        assert job == "segment", "add the translation of this job's documented line"
        from footprints_app.commands.segment import config_from_args
        from pipeline.segment import build_pipeline

        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, config_from_args(args))  # the documented flags
        result = pipeline.run()
        assert _hinted_transforms(result.job.proto_pipeline)  # the L4 hint reached the job


def test_beams_dry_run_through_the_command_ends_translated_not_run(inputs, capsys):
    """`footprints score ... --runner DataflowRunner --dry_run=True` ended in FileNotFoundError.

    Beam's translate-only check, as a platform engineer runs it on a submission: the job
    is built and translated, nothing is staged, submitted, claimed or written, and the
    command says so and exits 0. On a runner that ignores ``--dry_run`` it is refused.
    """
    argv = [
        "score",
        "--chips",
        inputs["chips"],
        "--model",
        inputs["classifier"],
        "--residential-fraction",
        "0.3",
        "--output",
        "gs://fake-bucket/runs/area-7/score",
        *launch.beam_options(_target()),
        "--dry_run=True",
        "--no_auth",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "translated, not run" in captured.out, captured.err[-2000:]
    assert "failed" not in captured.err
    local = inputs["root"] / "dry-direct"
    direct = argv[: argv.index("--output")] + ["--output", str(local), "--dry_run=True"]
    assert cli.main(direct) == 2
    assert "--dry_run=True only translates on DataflowRunner" in capsys.readouterr().err
    assert not local.exists()
