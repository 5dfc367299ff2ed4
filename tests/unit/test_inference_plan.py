"""The inference planner and the role's templates: what a vLLM 8x H100 node and a llama.cpp node get."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovinfra.inference import plan, ready
from sovinfra.lab import tiny_gguf
from tests.conftest import trusted

ROLE = Path(__file__).resolve().parents[2] / "roles" / "inference"
COMMIT = "a" * 40
IMAGE = "docker.io/vllm/vllm-openai:v0.11.0@sha256:" + "c" * 64


def settings() -> dict[str, Any]:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values["model_cache_dir"] = "/var/lib/sovinfra/hf-cache"
    values["agent_python"] = "/opt/sovinfra/venv/bin/python"
    site = yaml.safe_load((ROLE.parent / "site" / "defaults" / "main.yml").read_text())
    values["container_runtime_engine"] = site["site_container_runtime"]
    return values


def vllm_service(**extra: Any) -> dict[str, Any]:
    return {"name": "llama70b", "engine": "vllm", "port": 8000, "repo": "meta-llama/Llama-3.1-70B-Instruct",
            "revision": COMMIT, "api_key": "s3cret", "max_context": 32768, **extra}  # fmt: skip


def render(template: str, entry: dict[str, Any]) -> str:
    """The role's template, rendered by Ansible's own templar (its filters included)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    variables = {"item": entry, "inference_user": "sovinfra-inference", "ansible_managed": "Ansible managed"}
    templar = Templar(loader=DataLoader(), variables=variables)
    return str(templar.template(trusted((ROLE / "templates" / template).read_text())))


def test_vllm_on_8_h100_shards_across_all_gpus() -> None:
    [entry] = plan.plan([vllm_service()], settings(), gpu_count=8, host_address="10.0.0.5")
    config = entry["config"]
    assert config["tensor-parallel-size"] == 8 and "pipeline-parallel-size" not in config
    assert config["host"] == "10.0.0.5" and config["port"] == 8000
    assert config["served-model-name"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert config["max-model-len"] == 32768 and config["gpu-memory-utilization"] == 0.9
    assert entry["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert entry["env"]["VLLM_API_KEY"] == "s3cret" and "api_key" not in config
    snapshot = "/var/lib/sovinfra/hf-cache/models--meta-llama--Llama-3.1-70B-Instruct/snapshots/" + COMMIT
    assert entry["argv"] == [
        "/opt/sovinfra/engines/vllm-0.11.0/bin/vllm", "serve", snapshot,
        "--config", "/etc/sovinfra/inference/llama70b.yaml",
    ]  # fmt: skip
    assert entry["health_path"] == "/health"

    unit = render("inference.service.j2", entry)
    assert f"ExecStart=/opt/sovinfra/engines/vllm-0.11.0/bin/vllm serve {snapshot} --config" in unit
    for line in ("User=sovinfra-inference", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "Environment=HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1",
                 "EnvironmentFile=/etc/sovinfra/inference/llama70b.env"):  # fmt: skip
        assert line in unit.splitlines(), line
    assert "PrivateDevices" not in unit  # the GPUs' device nodes stay visible
    # The cached model is checked against its verified manifest before the engine may open it.
    assert f"ExecStartPre=+/opt/sovinfra/venv/bin/python -m sovinfra.mirror.cache_check {snapshot}" in unit
    assert "s3cret" not in unit
    rendered = yaml.safe_load(render("inference.yaml.j2", entry))
    assert rendered["tensor-parallel-size"] == 8 and rendered["enable-prefix-caching"] is True
    env = render("inference.env.j2", entry)
    assert "VLLM_API_KEY=s3cret" in env.splitlines() and "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7" in env


def test_vllm_gpu_subsets_and_pipeline_parallel() -> None:
    two = vllm_service(name="a", gpus=[4, 5], port=8001)
    pp = vllm_service(name="b", gpus=[0, 1, 2, 3], tensor_parallel_size=2, port=8002)
    a, b = plan.plan([two, pp], settings(), 8, "10.0.0.5")
    assert a["config"]["tensor-parallel-size"] == 2 and a["env"]["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert b["config"]["tensor-parallel-size"] == 2 and b["config"]["pipeline-parallel-size"] == 2


def test_llama_cpp_cpu_service() -> None:
    svc = {"name": "tiny", "port": 8000, "repo": "org/m", "revision": COMMIT, "file": "m.gguf",
           "api_key": "k", "max_context": 4096, "extra_args": {"n_batch": 256}}  # fmt: skip
    [entry] = plan.plan([svc], settings(), 8, "10.0.0.6")
    assert (
        entry["engine"] == "llama_cpp" and entry["gpus"] == [] and "CUDA_VISIBLE_DEVICES" not in entry["env"]
    )
    model = entry["config"]["models"][0]
    assert model["model"].endswith(f"/models--org--m/snapshots/{COMMIT}/m.gguf")
    assert model["model_alias"] == "org/m" and model["n_ctx"] == 4096 and model["n_batch"] == 256
    assert entry["config"]["interrupt_requests"] is False and entry["config"]["api_key"] == "k"
    assert entry["health_path"] is None
    assert "PrivateDevices=yes" in render("inference.service.j2", entry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"revision": "main"}, "revision: pin a 40-hex commit"),
        ({"name": "Bad_Name"}, "name: 'Bad_Name'"),
        ({"gpus": [8]}, "gpus: [8] not on this host (8 GPUs)"),
        ({"tensor_parallel_size": 3}, "tensor_parallel_size: 3 does not divide"),
        ({"engine": "tgi"}, "engine: 'tgi' is not one of"),
        ({"image": "vllm/vllm-openai:v0.11"}, "image: vllm/vllm-openai:v0.11: no digest; pin the image as "
                                              "docker.io/vllm/vllm-openai@sha256:<digest>"),
        ({"image": "vllm/vllm@sha256:123"}, "image: vllm/vllm@sha256:123: digest must be sha256"),
        ({"image": IMAGE, "engine": "llama_cpp", "file": "f"}, "image: only vllm services run from an image"),
    ],
)  # fmt: skip
def test_bad_services_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(plan.PlanError, match="inference_services\\[0\\]") as err:
        plan.plan([vllm_service(**change)], settings(), 8, "10.0.0.5")
    assert message in str(err.value)


def test_duplicate_ports_and_missing_gguf_file() -> None:
    with pytest.raises(plan.PlanError, match=r"\[1\] \(b\)\.port: 8000 is already taken"):
        plan.plan([vllm_service(name="a"), vllm_service(name="b")], settings(), 8, "h")
    with pytest.raises(plan.PlanError, match=r"\.file: llama_cpp serves one \.gguf"):
        plan.plan([{"name": "x", "port": 1, "repo": "o/m", "revision": COMMIT}], settings(), 0, "h")
    with pytest.raises(plan.PlanError, match="vllm needs GPUs"):
        plan.plan([vllm_service()], settings(), 0, "h")


def test_readiness_judges_the_model_list() -> None:
    body = b'{"object": "list", "data": [{"id": "tiny"}]}'
    assert ready.models_problem(200, body, "tiny") is None
    assert ready.models_problem(401, b"", "tiny") == "/v1/models answered 401"
    assert "not 'big'" in str(ready.models_problem(200, body, "big"))
    assert "OpenAI model list" in str(ready.models_problem(200, b"<html>", "tiny"))


def test_the_probe_judges_a_completion() -> None:
    done = b'{"choices": [{"text": " hi"}], "usage": {"completion_tokens": 4}}'
    assert ready.completion_problem(200, done) is None
    assert ready.completion_problem(200, b'{"choices": [{"text": "x"}]}') is None  # no usage: the text counts
    assert "answered 503: loading" in str(ready.completion_problem(503, b"loading"))
    assert "without generating" in str(
        ready.completion_problem(200, b'{"choices": [{"text": ""}], "usage": {}}')
    )
    zero = b'{"choices": [{"text": ""}], "usage": {"completion_tokens": 0}}'
    assert "without generating" in str(ready.completion_problem(200, zero))
    assert "OpenAI completion" in str(ready.completion_problem(200, b'{"choices": []}'))


def test_tiny_gguf_is_well_formed() -> None:
    data = tiny_gguf.model_bytes("t", seed=1)
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data)
    assert magic == b"GGUF" and version == 3 and n_tensors == 3 + 9 * tiny_gguf.Shape().layers and n_kv == 19
    assert tiny_gguf.model_bytes("t", seed=1) == data and tiny_gguf.model_bytes("t", seed=2) != data
    tokens, _scores, types = tiny_gguf.vocabulary()
    allowed = tiny_gguf.spoken(tokens, types)
    assert len(set(tokens)) == len(tokens)
    assert not any(allowed[:259])  # <unk> <s> </s> and the byte tokens are never said
    assert all(tokens[i].startswith("\u2581") for i, ok in enumerate(allowed) if ok)


def test_models_to_pull_once_each() -> None:
    a = vllm_service(name="a")
    b = vllm_service(name="b", port=8001)
    c = vllm_service(name="c", port=8002, repo="org/other")
    assert plan.models([a, b, c]) == [
        {"repo": a["repo"], "revision": COMMIT},
        {"repo": "org/other", "revision": COMMIT},
    ]


def test_vllm_from_an_image_gets_exactly_its_gpus_as_cdi_devices() -> None:
    svc = vllm_service(gpus=[2, 3], image=IMAGE)
    [entry] = plan.plan([svc], settings(), gpu_count=8, host_address="10.0.0.5")
    assert entry["image"] == IMAGE and entry["venv"] == "" and entry["gpus"] == [2, 3]
    # No CUDA_VISIBLE_DEVICES: inside, the container's two GPUs are 0 and 1; CDI picked them.
    assert "CUDA_VISIBLE_DEVICES" not in entry["env"] and entry["env"]["VLLM_API_KEY"] == "s3cret"
    snapshot = "/var/lib/sovinfra/hf-cache/models--meta-llama--Llama-3.1-70B-Instruct/snapshots/" + COMMIT
    unit = render("inference.service.j2", entry).splitlines()
    pull = "ExecStartPre=ctr --namespace sovinfra images pull --hosts-dir /etc/containerd/certs.d " + IMAGE
    assert pull in unit
    assert "ExecStartPre=-ctr --namespace sovinfra tasks rm --force sovinfra-inference-llama70b" in unit
    [start] = [line for line in unit if line.startswith("ExecStart=")]
    assert start.startswith("ExecStart=ctr --namespace sovinfra run --rm --net-host --runc-binary "
                            "/usr/bin/nvidia-container-runtime "
                            "--env NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=2,nvidia.com/gpu=3 "
                            "--env-file /etc/sovinfra/inference/llama70b.env ")  # fmt: skip
    # The whole cache (its snapshots link into blobs) and the config, read-only at their own paths.
    assert (
        "--mount type=bind,src=/var/lib/sovinfra/hf-cache,dst=/var/lib/sovinfra/hf-cache,options=rbind:ro"
        in start
    )
    assert start.endswith(f"{IMAGE} sovinfra-inference-llama70b vllm serve {snapshot} "
                          "--config /etc/sovinfra/inference/llama70b.yaml")  # fmt: skip
    # The model is still verified on the host before each start; the key only in the environment file.
    assert f"ExecStartPre=+/opt/sovinfra/venv/bin/python -m sovinfra.mirror.cache_check {snapshot}" in unit
    assert "s3cret" not in "\n".join(unit) and "User=sovinfra-inference" not in unit
    assert "VLLM_API_KEY=s3cret" in render("inference.env.j2", entry).splitlines()


def test_vllm_from_an_image_on_podman_and_not_on_docker() -> None:
    podman = {**settings(), "container_runtime_engine": "podman"}
    [entry] = plan.plan([vllm_service(gpus=[1], image=IMAGE)], podman, 8, "10.0.0.5")
    assert entry["pre_argv"][0] == ["podman", "pull", IMAGE]
    assert "--device=nvidia.com/gpu=1" in entry["argv"] and "--network" in entry["argv"]
    assert "--volume=/var/lib/sovinfra/hf-cache:/var/lib/sovinfra/hf-cache:ro" in entry["argv"]
    docker = {**settings(), "container_runtime_engine": "docker"}
    with pytest.raises(plan.PlanError, match="needs containerd or podman, not docker"):
        plan.plan([vllm_service(image=IMAGE)], docker, 8, "10.0.0.5")


def test_services_no_longer_declared_are_found_by_their_units() -> None:
    """The role's own expression (vars/main.yml), rendered by Ansible's templar as a host gets it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    expression = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__inference_undeclared"]
    units = [
        "sovinfra-inference-tiny.service",
        "sovinfra-inference-old-chat.service",
        "sovinfra-inference-a.service",
    ]
    variables = {
        "__inference_installed": {"files": [{"path": f"/etc/systemd/system/{u}"} for u in units]},
        "__inference_plan": [{"name": "tiny"}, {"name": "new"}],
    }
    found = Templar(loader=DataLoader(), variables=variables).template(trusted(expression))
    assert list(found) == ["a", "old-chat"]
