"""The deployment files agree with each other and with the installed Beam and TensorFlow.

No Docker engine is available in CI, so the images and manifests cannot be
run here; what can drift silently is checked instead: the SDK image version
against the Beam the pipelines are built with, the Flink and job-server versions
against what CI's Flink cluster runs (``deploy/flink/fetch-engines.sh``,
``tests/test_engines_flink.py``; a mismatch fails only at run time, on the
cluster), the worker-pool sidecar's contract (``--worker_pool`` on port 50000,
what ``--environment_config`` points at), and that the scripts' shell syntax
parses.
"""

from __future__ import annotations

import os
import re
import subprocess

import apache_beam
import pytest
import tensorflow as tf
import yaml
from apache_beam.options.pipeline_options import FlinkRunnerOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
BEAM = apache_beam.__version__
PY = "3.11"


def _read(*parts):
    with open(os.path.join(DEPLOY, *parts), encoding="utf-8") as f:
        return f.read()


def _yaml_docs(*parts):
    return [d for d in yaml.safe_load_all(_read(*parts)) if d]


def test_dockerfile_builds_on_the_installed_beam_and_tensorflow():
    text = _read("dataflow", "Dockerfile")
    assert f"ARG BEAM_VERSION={BEAM}" in text and f"ARG PYTHON_VERSION={PY}" in text
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
    tf_minor = ".".join(tf.__version__.split(".")[:2])
    assert f'"tensorflow[and-cuda]=={tf_minor}.*"' in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in text


def _flink_version(image: str) -> str:
    return re.match(r"flink:(\d+\.\d+\.\d+)", image).group(1)


def _engine_default(name: str) -> str:
    # deploy/flink/fetch-engines.sh fetches what CI's Flink cluster runs
    # (tests/test_engines_flink.py): the deployment files must name the same versions.
    return re.search(
        rf"^{name}=\$\{{{name}:-([^}}]+)\}}", _read("flink", "fetch-engines.sh"), re.M
    ).group(1)


def test_flink_cluster_job_server_and_worker_pool_fit_together():
    compose = yaml.safe_load(_read("flink", "docker-compose.yml"))["services"]
    k8s = {
        d["kind"]: d
        for name in ("flink-deployment.yaml", "job-server.yaml")
        for d in _yaml_docs("flink", "k8s", name)
    }
    flink = k8s["FlinkDeployment"]["spec"]
    job_server = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]

    versions = {
        _flink_version(compose["jobmanager"]["image"]),
        _flink_version(compose["taskmanager"]["image"]),
        _flink_version(flink["image"]),
    }
    assert len(versions) == 1
    version = versions.pop()
    assert version == _engine_default("FLINK_VERSION")
    minor = version.rsplit(".", 1)[0]
    assert minor in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert flink["flinkVersion"] == "v" + minor.replace(".", "_")
    # The job server is the Beam Java version CI ran against this Beam's Python SDK (Beam
    # Java 2.77 is not on Maven Central; see deploy/flink/job-server/pom.xml).
    expected = f"apache/beam_flink{minor}_job_server:{_engine_default('BEAM_JAVA_VERSION')}"
    assert compose["job-server"]["image"] == expected == job_server["image"]

    # The sidecar and the compose service serve the SDK worker pool on 50000, in
    # the task manager's network namespace: --environment_config=localhost:50000.
    sidecar = flink["taskManager"]["podTemplate"]["spec"]["containers"][0]
    assert sidecar["args"] == ["--worker_pool"] == compose["beam-worker-pool"]["command"]
    assert sidecar["ports"][0]["containerPort"] == 50000
    assert compose["beam-worker-pool"]["network_mode"] == "service:taskmanager"
    submit = _read("flink", "submit.sh")
    assert "--environment_type=EXTERNAL" in submit
    assert '--environment_config="${WORKER_POOL:-localhost:50000}"' in submit
    assert "--sdk_worker_parallelism=" in submit
    assert "--experiments=pre_optimize=all" in submit


@pytest.mark.parametrize(
    "script", ["dataflow/build.sh", "flink/submit.sh", "flink/fetch-engines.sh"]
)
def test_shell_scripts_parse(script):
    done = subprocess.run(
        ["bash", "-n", os.path.join(DEPLOY, script)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
