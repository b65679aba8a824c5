"""The cluster shapes in cluster/ and the working-dir upload rules in .rayignore.

Fast checks (no marker): the launcher YAML against Ray's own autoscaler schema and config validation,
the KubeRay manifests against the RayCluster/RayJob fields KubeRay defines, credentials only from
Secrets or instance identity, and every ``python jobs/X.py ...`` command in cluster/ parsed by that
job's own argument parser and config loader. The ``cluster``-marked test submits the scoring job with
``ray job submit --working-dir`` to a real two-node Ray cluster started on this machine with token
authentication on (``python -m pytest -m cluster tests/test_cluster.py``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.cluster_helpers import LocalRayCluster, wait_until

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws-cpu-head-gpu-workers.yaml"
KUBERAY = CLUSTER / "kuberay"
YAML_FILES = sorted([*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")])
KUBERAY_FILES = sorted(KUBERAY.glob("*.yaml"))

# Fields of the ray.io/v1 CRDs, from KubeRay's generated API reference (ray-project/kuberay
# docs/reference/api.md, RayClusterSpec / HeadGroupSpec / WorkerGroupSpec / RayJobSpec; "authOptions"
# from KubeRay v1.5.1, docs.ray.io "KubeRay CRD API reference"). The API server prunes unknown fields
# silently, so a misspelt field would just vanish: these sets make it fail here instead.
RAYCLUSTER_SPEC_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs", "authOptions",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend",
}
AUTOSCALER_OPTION_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds", "upscalingMode",
    "version", "env", "envFrom", "volumeMounts",
}

# Access key ids (long-term AKIA, temporary ASIA) and a secret key written as a value.
AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_VALUE = re.compile(r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?(?![$<{])[A-Za-z0-9/+=]{40}")
JOB_COMMAND = re.compile(r"python\s+jobs/([a-z_]+)\.py\b[^\n]*")


def _docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _one(path: Path) -> dict:
    docs = _docs(path)
    assert len(docs) == 1, f"{path.name}: expected one YAML document, found {len(docs)}"
    return docs[0]


def _ray_version() -> str:
    import ray

    return ray.__version__


def test_cluster_folder_holds_the_launcher_kuberay_files_and_docs():
    names = {p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*") if p.is_file()}
    assert {"README.md", "Dockerfile", "aws-cpu-head-gpu-workers.yaml", "kuberay/raycluster.yaml",
            "kuberay/rayjob-preprocess.yaml", "kuberay/rayjob-train.yaml", "kuberay/rayjob-score.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_yaml_file_parses_into_mappings(path):
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


# -- the cluster launcher ---------------------------------------------------------------------------


def test_launcher_config_passes_rays_own_schema_and_validation():
    import copy
    import os

    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _one(LAUNCHER)
    schema_path = Path(os.path.dirname(ray.autoscaler.__file__)) / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    # What `ray up` does before it first calls AWS: merge the provider's defaults, validate again.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_launcher_has_an_aws_cpu_head_and_an_autoscaled_gpu_worker_type():
    config = _one(LAUNCHER)
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"] and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker type offers a GPU"
    for name, worker in gpu_types.items():
        assert name != config["head_node_type"]
        assert worker["node_config"]["InstanceType"].startswith(("g", "p")), name
        assert worker.get("min_workers", 0) == 0 and worker["max_workers"] >= 1
        assert config["max_workers"] >= worker["max_workers"]


def test_launcher_starts_every_node_with_token_auth_and_installs_this_checkout():
    config = _one(LAUNCHER)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), key
    mounts = config["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token"
    for remote, local in mounts.items():
        if not local.startswith("~"):
            assert (REPO / local).exists(), f"file_mounts {remote}: {local} is not in the repository"
    assert {"~/fv2es/pyproject.toml", "~/fv2es/fv2es"} <= set(mounts)
    assert any("pip install" in c and "~/fv2es" in c for c in config["setup_commands"])
    for node_type in config["available_node_types"].values():
        assert not {"aws_access_key_id", "aws_secret_access_key"} & {k.lower() for k in node_type["node_config"]}


# -- KubeRay ----------------------------------------------------------------------------------------


def _cluster_specs(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    return [doc["spec"]["rayClusterSpec"]] if "rayClusterSpec" in doc["spec"] else []


def _containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _check_cluster_spec(spec: dict, where: str) -> None:
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS, f"{where}: unknown fields {set(spec) - RAYCLUSTER_SPEC_FIELDS}"
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER_OPTION_FIELDS, where
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS, f"{where}: headGroupSpec: unknown {set(head) - HEAD_GROUP_FIELDS}"
    assert {"template", "rayStartParams"} <= set(head), where
    for group in spec.get("workerGroupSpecs", []):
        assert set(group) <= WORKER_GROUP_FIELDS, f"{where}: {set(group) - WORKER_GROUP_FIELDS}"
        assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group), where
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], where
    # KubeRay's own validation: token auth (mode defaults to token) needs rayVersion >= 2.52.0.
    auth = spec.get("authOptions")
    if auth is not None and auth.get("mode", "token") == "token":
        assert tuple(int(x) for x in spec["rayVersion"].split(".")[:2]) >= (2, 52), where


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda p: p.name)
def test_kuberay_manifest_uses_only_fields_the_crds_define(path):
    doc = _one(path)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] in {"RayCluster", "RayJob"}
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}
    if doc["kind"] == "RayJob":
        spec = doc["spec"]
        assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown RayJob fields {set(spec) - RAYJOB_SPEC_FIELDS}"
        assert "rayClusterSpec" in spec or spec.get("clusterSelector", {}).get("ray.io/cluster")
    for spec in _cluster_specs(doc):
        _check_cluster_spec(spec, path.name)


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda p: p.name)
def test_kuberay_cluster_is_a_cpu_head_and_gpu_workers_with_token_auth(path):
    doc = _one(path)
    minor = ".".join(_ray_version().split(".")[:2])
    for spec in _cluster_specs(doc):
        assert spec["rayVersion"].startswith(minor + ".")
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head.get("resources", {}).get("limits", {})
        gpus = [int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
                for g in spec.get("workerGroupSpecs", [])]
        assert gpus and max(gpus) >= 1, "no GPU worker group"
        for container in _containers(spec):
            assert re.search(rf"ray[:-]?{re.escape(minor)}\.", container["image"]), container["image"]
        env = {e["name"]: e for c in _containers(spec) for e in c.get("env", [])}
        token_by_operator = spec.get("authOptions", {}).get("mode") == "token"
        token_by_hand = env.get("RAY_AUTH_MODE", {}).get("value") == "token" and "secretKeyRef" in env.get(
            "RAY_AUTH_TOKEN", {}).get("valueFrom", {})
        assert token_by_operator or token_by_hand, "Ray token auth is off"


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda p: p.name)
def test_kuberay_credentials_come_from_secrets_only(path):
    doc = _one(path)
    for spec in _cluster_specs(doc):
        for container in _containers(spec):
            for entry in container.get("env", []):
                name = entry["name"]
                secret = name == "RAY_AUTH_TOKEN" or (
                    name.startswith("AWS_") and name not in {"AWS_DEFAULT_REGION", "AWS_REGION"})
                if secret:
                    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], name
            for source in container.get("envFrom", []):
                assert set(source) <= {"secretRef", "configMapRef", "prefix"}
            assert any("secretRef" in s for s in container.get("envFrom", [])) or any(
                "secretKeyRef" in e.get("valueFrom", {}) for e in container.get("env", [])), container["name"]


@pytest.mark.parametrize("path", sorted(KUBERAY.glob("rayjob-*.yaml")), ids=lambda p: p.name)
def test_rayjob_cleans_up_and_uploads_a_working_dir_that_keeps_the_package(path, tmp_path):
    spec = _one(path)["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypoint"].startswith(f"python jobs/{path.stem.removeprefix('rayjob-')}.py ")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and isinstance(runtime_env["excludes"], list)
    if not re.match(r"^[a-z0-9+]+://", runtime_env["working_dir"]):  # a local folder: packed by the submitter
        assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    names = _package(REPO, tmp_path / "pkg.zip", runtime_env["excludes"])
    assert {"jobs/score.py", "fv2es/__init__.py", "fv2es/data/__init__.py", "configs/tiny.yaml"} <= names
    # The weights fv2es ships go with the code, although checkpoints (*.safetensors) are left out.
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "fv2es" / "models" / "weights").glob("*.safetensors")}
    assert shipped and shipped <= names


def test_rayjobs_ask_for_gpus_the_way_each_job_takes_them():
    train = _job_config(_entrypoints_of(KUBERAY / "rayjob-train.yaml")[0])
    assert train.train.use_gpu and train.train.num_workers >= 2
    score = _job_config(_entrypoints_of(KUBERAY / "rayjob-score.yaml")[0])
    assert score.resources.model_gpus >= 1 and score.resources.face_gpus > 0 and score.resources.asr_gpus > 0
    preprocess = _job_config(_entrypoints_of(KUBERAY / "rayjob-preprocess.yaml")[0])
    assert preprocess.resources.face_gpus > 0


def test_dockerfile_builds_on_the_pinned_ray_image_from_files_that_exist():
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert base.startswith(f"rayproject/ray:{_ray_version()}-")
    for line in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


# -- credentials, entrypoints, .rayignore -----------------------------------------------------------


def test_no_literal_aws_credentials_in_cluster_files():
    for path in [*CLUSTER.rglob("*"), REPO / ".rayignore"]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not AWS_KEY_ID.search(text), f"{path}: an AWS access key id"
            assert not AWS_SECRET_VALUE.search(text), f"{path}: an AWS secret access key"


def _entrypoints_of(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".yaml" and _one(path).get("kind") == "RayJob":
        text = _one(path)["spec"]["entrypoint"]
    text = text.replace("\\\n", " ")  # shell line continuations
    return [m.group(0) for m in JOB_COMMAND.finditer(text)]


ENTRYPOINTS = [(p, cmd) for p in sorted([*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.md")])
               for cmd in _entrypoints_of(p)]


def _job_config(command: str):
    """Parse ``python jobs/X.py ARGS`` with the job's own parser; the config it would run with."""
    from fv2es.cli import build_parser
    from fv2es.config import load_config

    argv = shlex.split(command, comments=True)
    script = argv[1]
    assert (REPO / script).is_file(), f"{script} does not exist"
    name = Path(script).stem
    try:
        args = build_parser().parse_args([name, *argv[2:]])
    except SystemExit as exc:
        raise AssertionError(f"`fv2es {name}` refuses the arguments of: {command}") from exc
    config = str(REPO / args.config) if args.config else None
    overrides = list(args.overrides)
    if name == "train":
        from fv2es.train.seed_cli import seed_request

        overrides = [*seed_request(args, cuda_available=True).overrides, *overrides]
    return load_config(config, overrides)


def test_cluster_files_show_every_job_command():
    shown = {Path(shlex.split(cmd)[1]).stem for _, cmd in ENTRYPOINTS}
    assert {"preprocess", "train", "score"} <= shown


@pytest.mark.parametrize("source,command", ENTRYPOINTS,
                         ids=[f"{p.relative_to(CLUSTER).as_posix()}:{c.split()[1]}" for p, c in ENTRYPOINTS])
def test_job_command_is_accepted_by_the_jobs_parser_and_config(source, command):
    _job_config(command)


def _package(root: Path, target: Path, excludes: list[str]) -> set[str]:
    """The files Ray's working_dir upload would pack from ``root`` (Ray's own packer, not a copy)."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import create_package

    create_package(str(root), target, include_gitignore=True,
                   excludes=[*ray_constants.get_runtime_env_default_excludes(), *excludes])
    with zipfile.ZipFile(target) as zf:
        return {n for n in zf.namelist() if not n.endswith("/")}


def test_rayignore_drops_environments_data_outputs_and_media_but_keeps_the_code(tmp_path):
    tree = tmp_path / "repo"
    kept = ["pyproject.toml", "jobs/score.py", "fv2es/__init__.py", "fv2es/data/__init__.py",
            "fv2es/media/decode.py", "configs/tiny.yaml", "tests/data/test_x.py", "cluster/README.md"]
    dropped = [".venv/lib/site.py", "venv/bin/python", ".git/HEAD", "data/raw/a.mp4", "data/labels.csv",
               "demo/manifest.jsonl", "shards/examples/part-0.parquet", "runs/demo/metrics.jsonl",
               "scores/videos.parquet", "out/x.txt", "fv2es/__pycache__/cli.cpython-311.pyc",
               "tests/media/clip.mp4", "models/best.safetensors", "fv2es.egg-info/PKG-INFO"]
    for rel in kept + dropped:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x")
    (tree / ".rayignore").write_text((REPO / ".rayignore").read_text())
    names = _package(tree, tmp_path / "pkg.zip", [])
    assert set(kept) <= names
    assert not set(dropped) & names, sorted(set(dropped) & names)


def test_this_checkout_uploads_as_a_small_package_with_the_jobs(tmp_path):
    names = _package(REPO, tmp_path / "pkg.zip", [])
    assert {"jobs/score.py", "jobs/train.py", "fv2es/cli.py", "configs/tiny.yaml", "pyproject.toml"} <= names
    # No environment, history, video or checkpoint; the weights fv2es ships are the one kind of model file
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "fv2es" / "models" / "weights").glob("*.safetensors")}
    assert not [n for n in names if n.startswith((".venv/", ".git/")) or n.endswith(".mp4")
                or (n.endswith(".safetensors") and n not in shipped)]
    assert shipped <= names
    assert (tmp_path / "pkg.zip").stat().st_size < 20 * 2**20


# -- a real job on a real two-node cluster ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_score_job_submitted_to_a_two_node_cluster_with_token_auth(tmp_path_factory):
    import pyarrow.parquet as pq

    from fv2es.config import config_from_dict
    from fv2es.media.democorpus import make_demo_corpus
    from fv2es.models import create_model, save_checkpoint

    data = tmp_path_factory.mktemp("job")
    corpus = make_demo_corpus(data / "corpus", videos=4, seconds=(1.0, 1.5)).parent
    checkpoint = data / "tiny.safetensors"
    save_checkpoint(checkpoint, create_model(config_from_dict({"model": {"preset": "fv2es_tiny"}}).model))
    output = data / "scores"

    # Ray's temp folders hold unix sockets (paths of about 100 characters at most): a short folder.
    base = Path(tempfile.mkdtemp(prefix="fv2es-rc-", dir="/tmp"))
    try:
        logs = _run_score_job(base, corpus, checkpoint, output)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    success = json.loads((output / "_SUCCESS").read_text())
    assert success["inputs"] == 4 and success["videos"] == 4 and success["videos_ok"] == 4, success
    segments = pq.read_table(output / "segments")
    assert segments.num_rows == 4
    assert sorted(Path(u).name for u in segments.column("video_uri").to_pylist()) == [
        f"clip_{i:05d}.mp4" for i in range(4)]
    assert set(segments.column("status").to_pylist()) == {"ok"}
    assert pq.read_table(output / "videos.parquet").num_rows == 4
    assert "inputs 4 | ok 4 | failed 0" in logs


def _run_score_job(base: Path, corpus: Path, checkpoint: Path, output: Path) -> str:
    """Start the cluster, check its auth, submit `jobs/score.py` from this checkout; the job's logs."""
    with LocalRayCluster(base, head_cpus=1, worker_cpus=2) as cluster:
        assert sorted(n["resources_total"]["CPU"] for n in cluster.alive_nodes()) == [1.0, 2.0]
        # Token auth is on: no token is refused, a wrong one forbidden, this cluster's accepted.
        assert cluster.get("/api/jobs/", token=None)[0] == 401
        assert cluster.get("/api/jobs/", token="not-the-token")[0] == 403
        assert cluster.get("/api/jobs/")[0] == 200

        submission_id = f"fv2es-score-{int(time.time())}"
        excludes = ["/.venv/", "/data/", "/out/", "/runs/", "*.mp4", "*.safetensors", "!/fv2es/models/weights/*.safetensors"]
        submitted = cluster.cli(
            "job", "submit", "--address", cluster.dashboard_url, "--no-wait", "--submission-id", submission_id,
            "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": excludes}), "--",
            "python", "jobs/score.py", "--input", str(corpus), "--output", str(output),
            "--checkpoint", str(checkpoint), "decode.max_side=320",
            "asr.mode=never", timeout_s=180)  # rows, not transcripts, are checked: no speech model to start
        assert submitted.returncode == 0, f"ray job submit failed:\n{submitted.stdout}\n{submitted.stderr}"

        def finished():
            info = cluster.job_status(submission_id)
            return info if info["status"] in {"SUCCEEDED", "FAILED", "STOPPED"} else None

        try:
            info = wait_until(finished, 600, f"job {submission_id}", interval_s=2)
        except TimeoutError:
            cluster.cli("job", "stop", "--address", cluster.dashboard_url, submission_id, timeout_s=60)
            pytest.fail(f"the job did not finish in 600 s:\n{cluster.job_logs(submission_id)}\n{cluster.logs()}")
        logs = cluster.job_logs(submission_id)
        assert info["status"] == "SUCCEEDED", f"{info.get('message')}\n{logs}\n{cluster.logs()}"
        assert info["entrypoint"].startswith("python jobs/score.py")
    wait_until(lambda: not cluster.leftover_pids(), 30, "the test cluster's processes to exit")
    return logs
