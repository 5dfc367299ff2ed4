"""What each inference service on a host runs: engine, files, flags, GPUs (pure; used by the role's filter).

The role renders units and configs from these plans, and the unit tests check the same plans, so what an
8-GPU vLLM node gets is tested without one.
"""

from __future__ import annotations

import re
from typing import Any

from sovinfra.mirror import image_ref

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ENGINES = ("llama_cpp", "vllm")
# Where each engine answers readiness probes beyond /v1/models (llama-cpp-python's server has no /health).
HEALTH_PATHS: dict[str, str | None] = {"llama_cpp": None, "vllm": "/health"}
# Where each engine serves its own Prometheus metrics (llama-cpp-python's server serves none).
METRICS_PATHS: dict[str, str | None] = {"llama_cpp": None, "vllm": "/metrics"}


class PlanError(ValueError):
    """A service declaration that cannot be deployed; the message names the service and key."""


def snapshot_dir(cache_dir: str, repo: str, commit: str) -> str:
    """Where `sovinfra mirror pull` puts a verified commit (the Hugging Face cache layout)."""
    return f"{cache_dir.rstrip('/')}/models--{repo.replace('/', '--')}/snapshots/{commit}"


def _gpus(svc: dict[str, Any], gpu_count: int, where: str) -> list[int]:
    wanted = svc.get("gpus")
    if wanted is None:
        return list(range(gpu_count))
    bad = [g for g in wanted if not 0 <= g < gpu_count]
    if bad:
        raise PlanError(f"{where}.gpus: {bad} not on this host ({gpu_count} GPUs)")
    if len(set(wanted)) != len(wanted):
        raise PlanError(f"{where}.gpus: a GPU is listed twice")
    return list(wanted)


def _llama_cpp(svc: dict[str, Any], s: dict[str, Any], model_dir: str, listen: str) -> dict[str, Any]:
    model: dict[str, Any] = {
        "model": f"{model_dir}/{svc['file']}",
        "model_alias": svc["served_model_name"],
        "n_gpu_layers": s["inference_llama_cpp_gpu_layers"],
        "n_batch": s["inference_llama_cpp_batch"],
    }
    if s["inference_llama_cpp_threads"]:
        model["n_threads"] = s["inference_llama_cpp_threads"]
    if svc.get("max_context"):
        model["n_ctx"] = svc["max_context"]
    model.update(svc.get("extra_args") or {})
    config: dict[str, Any] = {
        "host": listen,
        "port": svc["port"],
        # The default cancels a running request whenever another arrives: wrong for a shared endpoint.
        "interrupt_requests": False,
        "models": [model],
    }
    if svc.get("api_key"):
        config["api_key"] = svc["api_key"]
    return config


def _vllm(svc: dict[str, Any], s: dict[str, Any], gpus: list[int], listen: str, where: str) -> dict[str, Any]:
    tp = svc.get("tensor_parallel_size") or len(gpus)
    if tp < 1 or len(gpus) % tp:
        raise PlanError(f"{where}.tensor_parallel_size: {tp} does not divide the service's {len(gpus)} GPUs")
    config: dict[str, Any] = {
        "host": listen,
        "port": svc["port"],
        "served-model-name": svc["served_model_name"],
        "tensor-parallel-size": tp,
        "gpu-memory-utilization": s["inference_vllm_gpu_memory_utilization"],
        "max-num-seqs": s["inference_vllm_max_num_seqs"],
        "dtype": s["inference_vllm_dtype"],
        "enable-prefix-caching": s["inference_vllm_enable_prefix_caching"],
        "disable-log-requests": True,  # prompts are the users' data
    }
    if len(gpus) > tp:
        config["pipeline-parallel-size"] = len(gpus) // tp
    if svc.get("max_context"):
        config["max-model-len"] = svc["max_context"]
    config.update(svc.get("extra_args") or {})
    return config


def _declared(
    svc: dict[str, Any], n: int, names: set[str], ports: set[int], default_engine: str
) -> tuple[str, str, str, str]:
    """The checks that need no host: name, unique name and port, pinned commit, engine, GGUF file."""
    name = str(svc.get("name", ""))
    if not SERVICE_NAME.match(name):
        raise PlanError(
            f"inference_services[{n}].name: {name!r} must be lower-case letters, digits and dashes (max 40)"
        )
    where = f"inference_services[{n}] ({name})"
    if name in names:
        raise PlanError(f"{where}.name: declared twice")
    if svc.get("port") in ports:
        raise PlanError(f"{where}.port: {svc['port']} is already taken by another service")
    names.add(name)
    ports.add(svc.get("port"))  # type: ignore[arg-type]
    commit = str(svc.get("revision") or "")
    if not COMMIT.match(commit):
        raise PlanError(f"{where}.revision: pin a 40-hex commit from the mirror, not {commit or 'nothing'!r}")
    engine = str(svc.get("engine") or default_engine)
    if engine not in ENGINES:
        raise PlanError(f"{where}.engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "llama_cpp" and not svc.get("file"):
        raise PlanError(f"{where}.file: llama_cpp serves one .gguf file of the repository: name it")
    if svc.get("image") is not None:
        if engine != "vllm":
            raise PlanError(f"{where}.image: only vllm services run from an image")
        try:
            image_ref.pinned(str(svc["image"]))
        except ValueError as exc:
            raise PlanError(f"{where}.image: {exc}") from exc
    return name, where, commit, engine


CONTAINER_RUNTIME = "/usr/bin/nvidia-container-runtime"
CTR = ["ctr", "--namespace", "sovinfra"]


def container_commands(
    runtime: str,
    image: str,
    unit_name: str,
    gpus: list[int],
    mounts: list[str],
    env_file: str,
    argv: list[str],
) -> tuple[list[list[str]], list[str]]:
    """(commands before the start, the start) of a service run from an image: pulled by digest through the
    site registry, the plan's GPUs as CDI devices (exactly those: the container numbers them from 0), each
    mount read-only at its own path, the host's network, the environment file."""
    devices = [f"nvidia.com/gpu={g}" for g in gpus]
    if runtime == "containerd":
        pre = [
            [*CTR, "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", image],
            [*CTR, "tasks", "rm", "--force", unit_name],  # left by a crash: "-" in the unit, may be absent
            [*CTR, "containers", "rm", unit_name],
        ]
        start = [*CTR, "run", "--rm", "--net-host", "--runc-binary", CONTAINER_RUNTIME]
        start += ["--env", "NVIDIA_VISIBLE_DEVICES=" + ",".join(devices), "--env-file", env_file]
        for path in mounts:
            start += ["--mount", f"type=bind,src={path},dst={path},options=rbind:ro"]
        return pre, [*start, image, unit_name, *argv]
    if runtime == "podman":
        pre = [["podman", "pull", image], ["podman", "rm", "--force", "--ignore", unit_name]]
        start = ["podman", "run", "--rm", "--name", unit_name, "--network", "host", "--env-file", env_file]
        start += [f"--device={d}" for d in devices]
        start += [f"--volume={path}:{path}:ro" for path in mounts]
        return pre, [*start, image, *argv]
    raise PlanError(f"{image}: a service from an image needs containerd or podman, not {runtime}")


def declaration_problems(services: list[dict[str, Any]], default_engine: str) -> list[str]:
    """Every host-independent problem in a host's services (checked on the control node before any run)."""
    names: set[str] = set()
    ports: set[int] = set()
    problems = []
    for n, svc in enumerate(services):
        try:
            _declared(dict(svc), n, names, ports, default_engine)
        except PlanError as exc:
            problems.append(str(exc))
    return problems


def models(services: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The pinned models a host's services need, once each (what model_cache pulls)."""
    wanted: list[dict[str, str]] = []
    for svc in services:
        pull = {"repo": str(svc["repo"]), "revision": str(svc.get("revision") or "")}
        if pull not in wanted:
            wanted.append(pull)
    return wanted


def plan(
    services: list[dict[str, Any]], settings: dict[str, Any], gpu_count: int, host_address: str
) -> list[dict[str, Any]]:
    """One entry per service: unit, engine, model directory, config, environment, command, probes.

    settings: the role's variables (inference_*, model_cache_dir where the node's models are, agent_python
    the node agent's interpreter, container_runtime_engine for services run from an image).
    """
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    ports: set[int] = set()
    for n, raw in enumerate(services):
        svc = dict(raw)
        name, where, commit, engine = _declared(svc, n, names, ports, settings["inference_engine"])
        svc["served_model_name"] = svc.get("served_model_name") or svc["repo"]
        # str(): a vaulted value decrypts here, on the control node, into the 0640 files only.
        svc["api_key"] = str(svc["api_key"]) if svc.get("api_key") else ""
        listen = svc.get("listen") or host_address
        model_dir = snapshot_dir(settings["model_cache_dir"], svc["repo"], commit)
        config_file = f"{settings['inference_config_dir']}/{name}.yaml"
        env_file = f"{settings['inference_config_dir']}/{name}.env"
        gpus = _gpus(svc, gpu_count, where)
        env: dict[str, str] = {}
        if engine == "llama_cpp":
            config = _llama_cpp(svc, settings, model_dir, listen)
            version = settings["inference_llama_cpp_version"]
            requirement = f"llama-cpp-python[server]=={version}"
            venv = f"{settings['inference_engines_dir']}/{engine}-{version}"
            argv = [f"{venv}/bin/python", "-m", "llama_cpp.server", "--config_file", config_file]
            gpu_service = settings["inference_llama_cpp_gpu_layers"] != 0
        else:
            if not gpus:
                raise PlanError(f"{where}: vllm needs GPUs and this host has none")
            config = _vllm(svc, settings, gpus, listen, where)
            version = settings["inference_vllm_version"]
            requirement = f"vllm=={version}"
            venv = f"{settings['inference_engines_dir']}/{engine}-{version}"
            argv = [f"{venv}/bin/vllm", "serve", model_dir, "--config", config_file]
            if svc.get("api_key"):
                env["VLLM_API_KEY"] = svc["api_key"]
            env["VLLM_NO_USAGE_STATS"] = "1"
            gpu_service = True
        image = str(svc.get("image") or "")
        pre: list[list[str]] = []
        if image:
            venv = requirement = ""
            mounts = [settings["model_cache_dir"], config_file]
            argv = ["vllm", "serve", model_dir, "--config", config_file]
            runtime = settings["container_runtime_engine"]
            unit_name = f"sovinfra-inference-{name}"
            pre, argv = container_commands(runtime, image, unit_name, gpus, mounts, env_file, argv)
        elif gpu_service and gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        out.append(
            {
                "name": name,
                "unit": f"sovinfra-inference-{name}.service",
                "engine": engine,
                "venv": venv,
                "requirement": requirement,
                "repo": svc["repo"],
                "commit": commit,
                "model_dir": model_dir,
                "served_model_name": svc["served_model_name"],
                "listen": listen,
                "port": svc["port"],
                "gpus": gpus if gpu_service else [],
                "config": config,
                "config_file": config_file,
                "env_file": env_file,
                "env": env,
                "argv": argv,
                "image": image,
                "pre_argv": pre,
                "check_argv": [settings["agent_python"], "-m", "sovinfra.mirror.cache_check", model_dir],
                "health_path": HEALTH_PATHS[engine],
                "api_key": svc["api_key"],
            }
        )
    return out


def metrics_jobs(hosts: dict[str, tuple[str, list[dict[str, Any]], str]]) -> list[dict[str, Any]]:
    """{host: (address, inference_services, default engine)} -> one Prometheus scrape job per engine that
    serves metrics (`inference_<engine>`, its path), each service a target labelled with host and service."""
    jobs: dict[str, dict[str, Any]] = {}
    for host in sorted(hosts):
        address, services, default_engine = hosts[host]
        for svc in services or []:
            engine = str(svc.get("engine") or default_engine)
            path = METRICS_PATHS.get(engine)
            if path:
                job = jobs.setdefault(engine, {"job": f"inference_{engine}", "path": path, "targets": []})
                job["targets"].append(
                    {"target": f"{address}:{int(svc['port'])}", "host": host, "service": str(svc["name"])}
                )
    return [jobs[e] for e in sorted(jobs)]
