"""GPU bandwidth measured with NVIDIA's own tools, read and judged (pure): nvbandwidth's JSON document
(`nvbandwidth -j`) and the result table of nccl-tests' `all_reduce_perf`, each against the floor of the GPU
model (floors.yml, with the inventory's `acceptance_floors` over it).

Both are parsed by their structure (JSON keys; the table's own header names its columns), never scraped:
output that is not the tool's is an error record naming what is wrong, not a pass. The tools are the
site's to provide (sites build them from NVIDIA's sources): where a node lacks one, its checks are
skipped and say so.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from importlib import resources

import yaml

from sovinfra.acceptance.records import Record
from sovinfra.errors import UserError
from sovinfra.inventory.model import Inventory, host_vars, var_file

STAGE = "gpu bandwidth"
VAR = "acceptance_floors"  # the inventory variable a group or host sets its own floors in
NOT_INSTALLED = "SOVINFRA-NOT-INSTALLED"  # what the node answers when the tool is not on its PATH
# nvbandwidth's testcases the stage runs, and the floor each is judged against.
TESTCASES = {
    "host_to_device_memcpy_ce": ("h2d bandwidth", "host_to_device_gbps"),
    "device_to_host_memcpy_ce": ("d2h bandwidth", "device_to_host_gbps"),
    "device_to_device_memcpy_read_ce": ("d2d bandwidth", "device_to_device_gbps"),
}
KEYS = (
    "host_to_device_gbps",
    "device_to_host_gbps",
    "device_to_device_gbps",
    "all_reduce_busbw_gbps",
    "all_reduce_gpus",
)
ALL_REDUCE = "nccl all_reduce busbw"
SLOW = "drain the node; look at the GPU's PCIe link and NVLinks (nvidia-smi -q, nvidia-smi nvlink -s)"

# A floor: (GB/s, or a GPU count, and where it came from).
Floor = tuple[float, str]


class BandwidthError(ValueError):
    """What a tool printed is not its document."""


# --- floors ------------------------------------------------------------------------------------------


def _models(doc: object, where: str) -> dict[str, dict[str, Floor]]:
    if not isinstance(doc, dict):
        raise UserError(f"{where}: must map GPU models (their NVML names) to floors")
    out: dict[str, dict[str, Floor]] = {}
    for model, keys in doc.items():
        if not isinstance(keys, dict):
            raise UserError(f"{where}: {model}: must map {', '.join(KEYS)} to numbers")
        for key, value in keys.items():
            if key not in KEYS:
                raise UserError(f"{where}: {model}: {key}: unknown floor (known: {', '.join(KEYS)})")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise UserError(f"{where}: {model}: {key}: must be a number > 0, not {value!r}")
            out.setdefault(str(model), {})[key] = (float(value), where)
    return out


@functools.cache
def _data() -> object:
    return yaml.safe_load(resources.files("sovinfra.acceptance").joinpath("floors.yml").read_text())


def floors(given: object = None, where: str = "") -> dict[str, dict[str, Floor]]:
    """floors.yml's models, with `given` (a mapping of the same shape, from `where`) over them key by key."""
    out = _models(_data(), "floors.yml")
    if given is not None:
        for model, keys in _models(given, where).items():
            out[model] = {**out.get(model, {}), **keys}
    return out


def per_host(inv: Inventory) -> dict[str, dict[str, dict[str, Floor]]]:
    """Each host's floors: the data's, then the inventory's `acceptance_floors` it sees (checked here,
    before any host is touched; an error names the file and the key)."""
    out = {}
    for host in inv.hosts:
        given = host_vars(inv, host).get(VAR)
        out[host] = floors(given, f"{var_file(inv, host, VAR)}: {VAR} (host {host})")
    return out


# --- nvbandwidth -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Testcase:
    name: str
    status: str  # nvbandwidth's word: Passed, Waived, Not Found, Error
    matrix: tuple[tuple[float | None, ...], ...]  # GB/s; None where nvbandwidth printed N/A
    error: str = ""


def _cell(value: object, where: str) -> float | None:
    if value == "N/A":
        return None
    try:
        out = float(value)  # type: ignore[arg-type]  # nvbandwidth writes numbers as strings
    except (TypeError, ValueError):
        raise BandwidthError(f"{where}: {value!r} is not a bandwidth") from None
    if out < 0:
        raise BandwidthError(f"{where}: {value!r} is not a bandwidth")
    return out


def parse_nvbandwidth(text: str) -> dict[str, Testcase]:
    """The testcases of an `nvbandwidth -j` document by name; BandwidthError names what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        head = text.strip().splitlines()[0][:200] if text.strip() else "(nothing)"
        raise BandwidthError(f"not JSON ({exc.msg}): {head}") from exc
    root = doc.get("nvbandwidth") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise BandwidthError('no "nvbandwidth" object')
    if root.get("error"):
        raise BandwidthError(f"nvbandwidth: {root['error']}")
    cases = root.get("testcases")
    if not isinstance(cases, list):
        raise BandwidthError("testcases: missing")
    out = {}
    for case in cases:
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise BandwidthError("testcases: an entry without a name")
        name = case["name"]
        rows = case.get("bandwidth_matrix", [])
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise BandwidthError(f"{name}: bandwidth_matrix is not a list of rows")
        matrix = tuple(
            tuple(_cell(v, f"{name}: bandwidth_matrix[{i}][{j}]") for j, v in enumerate(row))
            for i, row in enumerate(rows)
        )
        out[name] = Testcase(name, str(case.get("status", "")), matrix, str(case.get("error") or ""))
    return out


def per_gpu(case: Testcase) -> dict[int, float | None]:
    """A testcase's figure for each GPU (its column's best for host<->device, whose rows are CPUs; the
    median of the GPU's pairs, both ways, for device<->device: one slow GPU does not drag its peers)."""
    if case.name.startswith("device_to_device"):
        n = len(case.matrix)
        out: dict[int, float | None] = {}
        for i in range(n):
            pairs = [case.matrix[i][j] for j in range(n) if j != i and j < len(case.matrix[i])]
            pairs += [case.matrix[j][i] for j in range(n) if j != i and i < len(case.matrix[j])]
            known = [v for v in pairs if v is not None]
            out[i] = statistics.median(known) if known else None
        return out
    columns = max((len(r) for r in case.matrix), default=0)
    return {
        j: max((r[j] for r in case.matrix if j < len(r) and r[j] is not None), default=None)  # type: ignore[type-var]
        for j in range(columns)
    }


def _ids(gpu: dict[str, str]) -> tuple[str, str, str]:
    """A Record's GPU identity fields (uuid, serial, bus id) from the health report's entry for it."""
    return gpu.get("uuid", ""), gpu.get("serial", ""), gpu.get("bus_id", "")


def _judged(
    run: str,
    host: str,
    check: str,
    value: float,
    floor: Floor | None,
    model: str,
    gpu: dict[str, str] | None = None,
    context: str = "",
    unjudged: str = "",
) -> Record:
    """A measurement (about `gpu`, or the node) against its floor; no floor: measured and warned about,
    saying why (`unjudged`, by default that the model has none)."""
    ids = _ids(gpu or {})
    text = f"{value:g} GB/s{context}"
    if floor is None:
        why = unjudged or f"no floor for {model or 'this GPU'}"
        action = f"set {VAR} for {model!r} in the inventory to judge it"
        return Record(
            run, STAGE, check, host, "warn", f"{text}; {why}", action, *ids, value=value, unit="GB/s"
        )
    low = value < floor[0]
    return Record(
        run,
        STAGE,
        check,
        host,
        "fail" if low else "pass",
        text + (f" < floor {floor[0]:g} GB/s" if low else ""),
        SLOW if low else "",
        *ids,
        value=value,
        unit="GB/s",
        threshold=floor[0],
        threshold_source=f"{floor[1]} {model}",
    )


def not_installed(run: str, host: str, tool: str) -> Record:
    return Record(
        run,
        STAGE,
        tool,
        host,
        "skipped",
        f"{tool} is not installed on the node",
        "the site provides it: build it from NVIDIA's sources into the site repository and list "
        "its package in dcgm_bandwidth_tools",
    )


def nvbandwidth_records(
    run: str, host: str, output: str, gpus: dict[int, dict[str, str]], floors_: dict[str, dict[str, Floor]]
) -> list[Record]:
    """One node's nvbandwidth document as records: per testcase the stage runs, one per GPU."""
    if output.strip() == NOT_INSTALLED:
        return [not_installed(run, host, "nvbandwidth")]
    try:
        cases = parse_nvbandwidth(output)
    except BandwidthError as exc:
        return [
            Record(run, STAGE, "nvbandwidth", host, "error", str(exc), "run `nvbandwidth -j` on the node")
        ]
    out = []
    for name, (check, key) in TESTCASES.items():
        case = cases.get(name)
        if case is None or case.status == "Not Found":
            out.append(Record(run, STAGE, check, host, "not-run", f"nvbandwidth ran no {name}"))
            continue
        if case.status == "Waived":  # e.g. device to device on a node with one GPU
            out.append(Record(run, STAGE, check, host, "skipped", f"{name}: waived by nvbandwidth"))
            continue
        if case.status != "Passed":
            out.append(
                Record(run, STAGE, check, host, "error", f"{name}: {case.status} {case.error}".strip())
            )
            continue
        for index, value in sorted(per_gpu(case).items()):
            gpu = gpus.get(index, {})
            if value is None:
                out.append(
                    Record(run, STAGE, check, host, "fail", f"{name}: not measured (N/A)", SLOW, *_ids(gpu))
                )
                continue
            model = gpu.get("name", "")
            out.append(_judged(run, host, check, value, floors_.get(model, {}).get(key), model, gpu))
    return out


# --- nccl-tests --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllReduce:
    ranks: int  # the GPUs the test ran on ("Using devices")
    sizes: tuple[int, ...]  # bytes, per result row
    busbw: tuple[float, ...]  # GB/s out of place, per row
    wrong: int  # values that failed validation (the rows' #wrong, or the run's out-of-bounds total)


def _number(token: str, where: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise BandwidthError(f"{where}: {token!r} is not a number") from None


def parse_all_reduce(text: str) -> AllReduce:
    """all_reduce_perf's output: the columns by the table's own header (releases differ: `root` came
    later, `#wrong` replaced a per-row `error`), every result row checked against it, then the validation
    summary (`Out of bounds values`); BandwidthError names what is wrong."""
    lines = text.splitlines()
    header = next(
        (
            i
            for i, line in enumerate(lines)
            if line.startswith("#") and {"size", "time", "busbw"} <= set(line[1:].split())
        ),
        None,
    )
    if header is None:
        first = next((line for line in lines if line.strip() and not line.startswith("#")), "(nothing)")
        raise BandwidthError(f"no all_reduce_perf result table: {first.strip()[:200]}")
    columns = lines[header][1:].split()
    busbw = columns.index("busbw")  # the first: out of place
    wrongs = [i for i, c in enumerate(columns) if c == "#wrong"]
    size = columns.index("size")
    ranks = sum(1 for line in lines[:header] if line.lstrip("# ").startswith("Rank "))
    sizes, oop, wrong, bounds = [], [], 0, None
    for n, line in enumerate(lines[header + 1 :], start=header + 2):
        if line.startswith("#"):
            label, _, value = line[1:].partition(":")
            if label.strip() == "Out of bounds values":  # the run's total of wrong values
                bounds = int(_number((value.split() or [""])[0], f"line {n}: Out of bounds values"))
            continue
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != len(columns):
            raise BandwidthError(f"line {n}: {len(tokens)} fields where the header names {len(columns)}")
        sizes.append(int(_number(tokens[size], f"line {n}: size")))
        oop.append(_number(tokens[busbw], f"line {n}: busbw"))
        wrong += sum(int(_number(tokens[i], f"line {n}: #wrong")) for i in wrongs if tokens[i] != "N/A")
    if not sizes:
        raise BandwidthError("the result table has no rows")
    if bounds is None:
        raise BandwidthError("no validation summary (Out of bounds values): the run did not finish")
    return AllReduce(ranks, tuple(sizes), tuple(oop), max(wrong, bounds))


def all_reduce_records(
    run: str, host: str, output: str, models: list[str], floors_: dict[str, dict[str, Floor]]
) -> list[Record]:
    """One node's all_reduce_perf output as one record: bus bandwidth at the largest message against the
    floor of the node's GPU model (for the GPU count the floor is for); wrong results fail."""
    if output.strip() == NOT_INSTALLED:
        return [not_installed(run, host, "all_reduce_perf")]
    try:
        result = parse_all_reduce(output)
    except BandwidthError as exc:
        return [
            Record(
                run, STAGE, ALL_REDUCE, host, "error", str(exc), "run nccl-tests' all_reduce_perf on the node"
            )
        ]
    largest = max(range(len(result.sizes)), key=lambda i: result.sizes[i])
    value, at = result.busbw[largest], f"at {result.sizes[largest] / 2**30:g} GiB over {result.ranks} GPUs"
    if result.wrong:
        return [
            Record(
                run,
                STAGE,
                ALL_REDUCE,
                host,
                "fail",
                f"{result.wrong} result(s) failed validation",
                "drain the node: a GPU or link corrupts data; run dcgmi diag -r 3",
                value=value,
                unit="GB/s",
            )
        ]
    model = models[0] if models and len(set(models)) == 1 else ""
    floor = floors_.get(model, {}).get("all_reduce_busbw_gbps")
    gpus = floors_.get(model, {}).get("all_reduce_gpus")
    if gpus is not None and int(gpus[0]) != result.ranks:
        floor = None  # the floor is for another GPU count
    why = f"no floor for {result.ranks}x {model or 'mixed GPUs'}"
    return [_judged(run, host, ALL_REDUCE, value, floor, model, context=f" {at}", unjudged=why)]
