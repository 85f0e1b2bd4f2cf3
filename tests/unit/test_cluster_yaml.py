"""The cluster definitions users launch from must be valid before anyone pays for a GPU."""

import json
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def _launcher_yaml(name: str) -> dict:
    """The file, once it has passed Ray's own cluster-config schema."""
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(cfg, schema)
    return cfg


def _check_workers_scale_from_zero(cfg: dict) -> None:
    """Every worker node type starts at zero nodes and may have some; the head is one of the types."""
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = [t for t in types if t != cfg["head_node_type"]]
    assert workers and all(types[t]["min_workers"] == 0 < types[t]["max_workers"] for t in workers)


def test_cluster_launcher_yaml_matches_rays_schema():
    cfg = _launcher_yaml("aws-gpu.yaml")
    _check_workers_scale_from_zero(cfg)
    assert cfg["docker"]["image"].startswith("rayproject/ray:") and cfg["docker"]["image"].endswith("-gpu")
    assert any("gram-ray" in cmd and "[gpu]" in cmd for cmd in cfg["setup_commands"])


def test_kuberay_rayjob_is_well_formed():
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert "pipelines/selftrain.py" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["submitterConfig"]["backoffLimit"] >= 1
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    yaml.safe_load(spec["runtimeEnvYAML"])
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = group["template"]["spec"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_local_fake_autoscaling_yaml_scales_from_the_head_alone():
    cfg = _launcher_yaml("local-fake-autoscaling.yaml")
    assert cfg["provider"]["type"] == "fake_multinode"
    _check_workers_scale_from_zero(cfg)
