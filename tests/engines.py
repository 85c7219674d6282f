"""Starting and stopping the engines the runner tests use, each as its own process group.

Every service here is a real one, on loopback, started as a subprocess in a new session (so
its children, e.g. the SDK workers of a worker pool, go with it), with a deadline on every
wait and its log kept for the failure message:

* Beam's local job service and the Python SDK worker pool (EXTERNAL environment);
* a Flink session cluster: a JobManager (``StandaloneSessionClusterEntrypoint``) and one
  TaskManager (``TaskManagerRunner``) run with ``java`` directly from the Flink
  distribution's jars (PyPI's ``apache-flink-libraries``, which has no launch scripts), their
  JVM memory flags computed by Flink's own ``BashJavaUtils`` as ``bin/*.sh`` would;
* Beam's Flink job server (``FlinkJobServerDriver``) pointed at it with ``--flink-master``.

The engines are fetched by ``deploy/flink/fetch-engines.sh`` into ``.tools/`` (or
``$FOOTPRINTS_ENGINES``): :func:`require` finds them, and skips a test when they are missing
outside CI but fails it in CI (``CI=true``), where they must be there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = os.environ.get("FOOTPRINTS_ENGINES", os.path.join(ROOT, ".tools"))
FETCH = "bash deploy/flink/fetch-engines.sh"

STARTUP_TIMEOUT_S = 60
FLINK_TIMEOUT_S = 120  # two JVMs on a busy 2-core machine
STOP_TIMEOUT_S = 10


def versions() -> dict:
    """What deploy/flink/fetch-engines.sh fetched: ``{engine: {versions..., "paths": {...}}}``."""
    # fetch-engines.sh records what it fetched; the tests report and check these.
    path = os.path.join(ENGINES, "versions.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def require(engine: str) -> dict:
    """The fetched ``engine``'s paths and versions (``flink`` or ``prism``).

    Skips the calling test when the engine has not been fetched, unless ``CI=true``: there
    a missing engine fails the test, with the command that fetches it.
    """
    info = versions().get(engine)
    if info and all(os.path.exists(p) for p in info.get("paths", {}).values()):
        return info
    message = f"{engine} is not fetched into {ENGINES}: run `{FETCH}`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def deadline(seconds: int, what: str):
    """Raises TimeoutError in the main thread if the block runs longer than ``seconds``.

    A portable job's ``wait_until_finish`` has no timeout of its own: a stuck engine would
    hang CI instead of failing it.
    """

    def expired(signum, frame):
        raise TimeoutError(f"{what} did not finish in {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def venv_env(**extra) -> dict:
    """This environment, with this interpreter's folder first on PATH.

    Beam's worker pool starts SDK workers with a bare ``python``: it must be this
    environment's (in the Beam SDK container it is the image's).
    """
    return dict(
        os.environ,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        TF_CPP_MIN_LOG_LEVEL="2",
        **extra,
    )


def free_port() -> int:
    # Some services take their port on the command line and do not report it, so one is
    # reserved and released here; the small race is acceptable on loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A subprocess in its own process group, with its log file."""

    def __init__(self, name: str, args: list[str], logs, env=None):
        self.name = name
        self.log_path = os.path.join(str(logs), f"{name}.log")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            args,
            env=env or venv_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, n: int = 3000) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-n:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def wait_for_port(self, port: int, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not listen on {port} in {timeout_s}s:\n{self.tail()}")

    def stop(self) -> None:
        """Stops the service and every process it started (its whole process group)."""
        if self.process.poll() is None:
            # SIGTERM skips the worker pool's atexit clean-up, so its SDK workers (its
            # children, in its group) are signalled with it.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        self._log.close()


@contextlib.contextmanager
def services():
    """Yields a list to append :class:`Service` objects to; stops them all, last first."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                service.stop()


def start_worker_pool(logs, started: list) -> str:
    """Starts the Python SDK worker pool; returns its endpoint for --environment_config."""
    port = free_port()
    pool = Service(
        "worker_pool",
        [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={port}",
        ],
        logs,
    )
    started.append(pool)
    pool.wait_for_port(port)
    return f"localhost:{port}"


def start_local_job_service(logs, started: list) -> str:
    """Starts Beam's Python job service; returns its endpoint for --job_endpoint."""
    port_file = os.path.join(str(logs), "job_service.port")
    job = Service(
        "job_service",
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            "--port=0",
            f"--port_file={port_file}",
        ],
        logs,
    )
    started.append(job)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (os.path.exists(port_file) and open(port_file).read().strip()):
        job.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the job service wrote no port in {STARTUP_TIMEOUT_S}s")
        time.sleep(0.2)
    return f"localhost:{int(open(port_file).read())}"


# --------------------------------------------------------------------------
# Flink: session cluster and Beam's job server
# --------------------------------------------------------------------------

FLINK_CONF = """\
# Written by tests/engines.py: a one-TaskManager session cluster on loopback.
jobmanager.rpc.address: localhost
jobmanager.bind-host: localhost
jobmanager.rpc.port: {rpc_port}
rest.address: localhost
rest.bind-address: localhost
rest.port: {rest_port}
taskmanager.host: localhost
taskmanager.bind-host: localhost
# Bounded memory: the JVMs are small, the SDK workers (TensorFlow) live in the worker pool.
jobmanager.memory.process.size: 1024m
taskmanager.memory.process.size: 3072m
# Beam's batch translation (Flink's DataSet API) runs every operator of a job at once, each
# with its own network buffers. score (spill, exact passes, repeated-id check, table writers)
# asked for 512 buffers when only 504 of 16384 (512 MB) were free, with the previous job's
# buffers still being released: 1 GB (32768 buffers) leaves room for one job after another.
taskmanager.memory.network.min: 1024m
taskmanager.memory.network.max: 1024m
taskmanager.numberOfTaskSlots: {slots}
parallelism.default: {slots}
io.tmp.dirs: {tmp}
"""


# The pip distribution has no conf/: Flink's own log goes to -Dlog.file.
LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FileAppender
appender.file.name = FileAppender
appender.file.type = File
appender.file.fileName = ${sys:log.file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


def _flink_jvm_args(home: str, conf: str, which: str) -> list[str]:
    # What bin/jobmanager.sh and bin/taskmanager.sh do: Flink's BashJavaUtils turns the
    # configured process size into -Xmx/-Xms/... and the matching -D memory options.
    out = subprocess.run(
        [
            "java",
            "-cp",
            f"{home}/bin/bash-java-utils.jar:{home}/lib/*",
            "org.apache.flink.runtime.util.bash.BashJavaUtils",
            f"GET_{which}_RESOURCE_PARAMS",
            "--configDir",
            conf,
        ],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=True,
    ).stdout
    results = [
        line.split(":", 1)[1]
        for line in out.splitlines()
        if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")
    ]
    jvm, dynamic = results[-2].split(), results[-1].split()
    return jvm, dynamic


def _flink_overview(rest: str) -> dict:
    with urllib.request.urlopen(f"http://{rest}/overview", timeout=5) as response:
        return json.load(response)


def start_flink_cluster(logs, started: list, slots: int = 2) -> str:
    """Starts a JobManager and a TaskManager; returns the REST address (``localhost:PORT``)."""
    info = require("flink")
    home = info["paths"]["flink_home"]
    conf = os.path.join(str(logs), "flink-conf")
    os.makedirs(conf, exist_ok=True)
    rest_port = free_port()
    with open(os.path.join(conf, "config.yaml"), "w", encoding="utf-8") as f:
        f.write(
            FLINK_CONF.format(
                rpc_port=free_port(),
                rest_port=rest_port,
                slots=slots,
                tmp=os.path.join(str(logs), "flink-tmp"),
            )
        )
    classpath = f"{home}/lib/*"
    with open(os.path.join(conf, "log4j.properties"), "w", encoding="utf-8") as f:
        f.write(LOG4J)
    for which, main in (
        ("JM", "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"),
        ("TM", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"),
    ):
        jvm, dynamic = _flink_jvm_args(home, conf, which)
        name = "flink_jobmanager" if which == "JM" else "flink_taskmanager"
        args = [
            "java",
            *jvm,
            f"-Dlog.file={logs}/{name}.flink.log",
            f"-Dlog4j.configurationFile=file:{conf}/log4j.properties",
            "-cp",
            classpath,
            main,
            "--configDir",
            conf,
        ] + dynamic
        started.append(Service(name, args, logs, env=venv_env(FLINK_CONF_DIR=conf)))
        if which == "JM":
            started[-1].wait_for_port(rest_port, FLINK_TIMEOUT_S)
    rest = f"localhost:{rest_port}"
    deadline = time.monotonic() + FLINK_TIMEOUT_S
    while True:
        for service in started[-2:]:
            service.check_alive()
        with contextlib.suppress(OSError, ValueError):
            if _flink_overview(rest).get("taskmanagers", 0) >= 1:
                return rest
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no TaskManager registered with {rest} in "
                f"{FLINK_TIMEOUT_S}s:\n{started[-1].tail()}"
            )
        time.sleep(0.5)


def start_flink_job_server(logs, started: list, flink_master: str) -> tuple[str, str]:
    """Starts Beam's Flink job server; returns its (job, artifact) endpoints."""
    info = require("flink")
    job_port, artifact_port, expansion_port = free_port(), free_port(), free_port()
    server = Service(
        "flink_job_server",
        [
            "java",
            "-Xmx768m",
            "-cp",
            os.path.join(info["paths"]["job_server_lib"], "*"),
            "org.apache.beam.runners.flink.FlinkJobServerDriver",
            f"--flink-master={flink_master}",
            "--job-host=localhost",
            f"--job-port={job_port}",
            f"--artifact-port={artifact_port}",
            f"--expansion-port={expansion_port}",
            f"--artifacts-dir={logs}/artifacts",
        ],
        logs,
    )
    started.append(server)
    server.wait_for_port(job_port, FLINK_TIMEOUT_S)
    server.wait_for_port(artifact_port, FLINK_TIMEOUT_S)
    return f"localhost:{job_port}", f"localhost:{artifact_port}"


def flink_submit_args(
    job_endpoint: str, artifact_endpoint: str, worker: str, parallelism: int = 2
) -> list[str]:
    """The Beam flags deploy/flink/submit.sh passes (test_deploy_manifests checks the script).

    ``pre_optimize=all``: the SDK fuses the job into stages before submission; the job
    server's own fuser (Beam Java 2.62) fails prepare's graph (apache/beam#34647).
    """
    return [
        "--runner=PortableRunner",
        f"--job_endpoint={job_endpoint}",
        f"--artifact_endpoint={artifact_endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker}",
        "--sdk_worker_parallelism=1",
        f"--parallelism={parallelism}",
        "--experiments=pre_optimize=all",
    ]


def wait_until_flink_idle(rest: str, timeout_s: float = FLINK_TIMEOUT_S) -> None:
    """Waits until no job runs and every slot is free.

    A finished job's network buffers go back to the TaskManager with its slots, a little
    after the job is FINISHED; a job submitted at once can find too few ("Insufficient
    number of network buffers: required 512, but only 505 available").
    """
    deadline = time.monotonic() + timeout_s
    while True:
        overview = _flink_overview(rest)
        if overview.get("jobs-running", 0) == 0 and overview.get("slots-available") == overview.get(
            "slots-total"
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Flink at {rest} still busy after {timeout_s}s: {overview}")
        time.sleep(0.5)


def flink_jobs(rest: str) -> list[dict]:
    """The cluster's jobs as its REST API lists them (id, name, state)."""
    with urllib.request.urlopen(f"http://{rest}/jobs/overview", timeout=5) as response:
        return json.load(response)["jobs"]


#: One small job, DirectRunner reference included, on a busy 2-core machine.
JOB_TIMEOUT_S = 900


@pytest.fixture(autouse=True)
def bounded_job(request):
    """Fails an engine test that runs past :data:`JOB_TIMEOUT_S` (portable waits have none)."""
    with deadline(JOB_TIMEOUT_S, request.node.name):
        yield
