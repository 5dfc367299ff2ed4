"""nvbandwidth's JSON and nccl-tests' all_reduce_perf table, parsed and judged against per-model floors.

The fixtures are in each tool's own format: nvbandwidth's `-j` document (the keys its json_output writes:
testcases with name, status, bandwidth_matrix of strings with N/A on the diagonal, sum) and
all_reduce_perf's table (the header naming the columns, `root` and `#wrong` in current releases, the
validation and average lines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sovinfra.acceptance import bandwidth
from sovinfra.errors import UserError
from sovinfra.inventory import model
from tests.conftest import two_nodes

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bandwidth"
H100 = "NVIDIA H100 80GB HBM3"
GPUS = {
    i: {"uuid": f"GPU-{i}", "serial": f"165492300{i}", "bus_id": f"0000:{i:02x}:00.0", "name": H100}
    for i in range(8)
}


def nvbandwidth_doc() -> dict:
    return json.loads((FIXTURES / "nvbandwidth-8x-h100.json").read_text())


def all_reduce_text() -> str:
    return (FIXTURES / "all_reduce_perf-8x-h100.txt").read_text()


def test_a_healthy_h100_node_passes_every_floor_per_gpu_by_serial() -> None:
    records = bandwidth.nvbandwidth_records(
        "r", "n1", json.dumps(nvbandwidth_doc()), GPUS, bandwidth.floors()
    )
    assert len(records) == 24  # three testcases, eight GPUs
    assert {r.status for r in records} == {"pass"}
    h2d = [r for r in records if r.check == "h2d bandwidth"]
    assert [r.gpu_serial for r in h2d] == [GPUS[i]["serial"] for i in range(8)]
    assert h2d[0].value == 55.3421 and h2d[0].threshold == 48.0 and h2d[0].unit == "GB/s"
    assert h2d[0].threshold_source == f"floors.yml {H100}"
    d2d = [r for r in records if r.check == "d2d bandwidth"]
    assert all(389 < float(r.value or 0) < 392 for r in d2d)


def test_one_slow_gpu_fails_alone_and_n_a_is_not_measured() -> None:
    doc = nvbandwidth_doc()
    cases = {c["name"]: c for c in doc["nvbandwidth"]["testcases"]}
    cases["host_to_device_memcpy_ce"]["bandwidth_matrix"][0][3] = "26.1"  # GPU 3 on a Gen5 x8 link
    d2d = cases["device_to_device_memcpy_read_ce"]["bandwidth_matrix"]
    for j in range(8):  # GPU 5's NVLinks down: its pairs go over PCIe
        if j != 5:
            d2d[5][j] = d2d[j][5] = "41.2"
    cases["device_to_host_memcpy_ce"]["bandwidth_matrix"][0][6] = "N/A"
    records = bandwidth.nvbandwidth_records("r", "n1", json.dumps(doc), GPUS, bandwidth.floors())
    bad = {(r.check, r.gpu_serial, r.status) for r in records if r.status != "pass"}
    assert bad == {
        ("h2d bandwidth", GPUS[3]["serial"], "fail"),
        ("d2d bandwidth", GPUS[5]["serial"], "fail"),
        ("d2h bandwidth", GPUS[6]["serial"], "fail"),
    }
    slow = next(r for r in records if r.check == "h2d bandwidth" and r.status == "fail")
    assert slow.message == "26.1 GB/s < floor 48 GB/s" and slow.action


def test_a_model_without_a_floor_is_measured_and_says_so() -> None:
    gpus = {i: {**g, "name": "NVIDIA L40S"} for i, g in GPUS.items()}
    records = bandwidth.nvbandwidth_records(
        "r", "n1", json.dumps(nvbandwidth_doc()), gpus, bandwidth.floors()
    )
    assert {r.status for r in records} == {"warn"}
    assert "no floor for NVIDIA L40S" in records[0].message and "acceptance_floors" in records[0].action


@pytest.mark.parametrize(
    ("text", "status", "match"),
    [
        (bandwidth.NOT_INSTALLED, "skipped", "nvbandwidth is not installed"),
        ("cuInit failed: CUDA_ERROR_NO_DEVICE", "error", "not JSON"),
        ('{"nvbandwidth": {"error": "cudaErrorInsufficientDriver"}}', "error", "cudaErrorInsufficientDriver"),
        (
            '{"nvbandwidth": {"testcases": [{"name": "host_to_device_memcpy_ce", "status": "Passed", '
            '"bandwidth_matrix": [["fast"]]}]}}',
            "error",
            r"bandwidth_matrix\[0\]\[0\]: 'fast'",
        ),
        ("[]", "error", 'no "nvbandwidth" object'),
    ],
)
def test_what_is_not_nvbandwidth_output_is_no_pass(text: str, status: str, match: str) -> None:
    records = bandwidth.nvbandwidth_records("r", "n1", text, GPUS, bandwidth.floors())
    assert len(records) == 1 and records[0].status == status and re.search(match, records[0].message)


def test_waived_and_missing_testcases() -> None:
    doc = nvbandwidth_doc()
    cases = doc["nvbandwidth"]["testcases"]
    cases[2] = {"name": "device_to_device_memcpy_read_ce", "status": "Waived"}
    del cases[1]
    records = bandwidth.nvbandwidth_records("r", "n1", json.dumps(doc), GPUS, bandwidth.floors())
    assert {(r.check, r.status) for r in records if r.status != "pass"} == {
        ("d2h bandwidth", "not-run"),
        ("d2d bandwidth", "skipped"),
    }


def test_all_reduce_bus_bandwidth_at_the_largest_message_against_the_node_floor() -> None:
    parsed = bandwidth.parse_all_reduce(all_reduce_text())
    assert parsed.ranks == 8 and parsed.sizes[-1] == 16 * 2**30 and parsed.busbw[-1] == 478.24
    assert parsed.wrong == 0
    [record] = bandwidth.all_reduce_records("r", "n1", all_reduce_text(), [H100] * 8, bandwidth.floors())
    assert (record.status, record.value, record.threshold) == ("pass", 478.24, 460.0)
    assert record.message == "478.24 GB/s at 16 GiB over 8 GPUs"
    slow = all_reduce_text().replace("478.24", "441.50")
    [record] = bandwidth.all_reduce_records("r", "n1", slow, [H100] * 8, bandwidth.floors())
    assert record.status == "fail" and "< floor 460 GB/s" in record.message
    # The floor is for all 8 GPUs: the same busbw over 4 of them is measured, not judged.
    four = "\n".join(line for line in all_reduce_text().splitlines() if not re.search(r"Rank +[4-7] ", line))
    [record] = bandwidth.all_reduce_records("r", "n1", four, [H100] * 4, bandwidth.floors())
    assert record.status == "warn" and "no floor for 4x" in record.message


def test_all_reduce_wrong_results_fail_whatever_the_bandwidth() -> None:
    rows = all_reduce_text().splitlines()
    rows[-6] = re.sub(r"(\s+)0(\s+\S+\s+\S+\s+\S+\s+)0$", r"\g<1>3\g<2>0", rows[-6])
    text = "\n".join(rows).replace("Out of bounds values : 0 OK", "Out of bounds values : 3 FAILED")
    [record] = bandwidth.all_reduce_records("r", "n1", text, [H100] * 8, bandwidth.floors())
    assert record.status == "fail" and record.message == "3 result(s) failed validation"


def test_an_older_all_reduce_table_without_root_parses_by_its_header() -> None:
    text = """# nThread 1 nGpus 2 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20
#
# Using devices
#   Rank  0 Pid  20110 on   node02 device  0 [0x3b] NVIDIA H200
#   Rank  1 Pid  20110 on   node02 device  1 [0x5e] NVIDIA H200
#
#                                                     out-of-place                       in-place
#       size         count    type   redop     time   algbw   busbw  error     time   algbw   busbw  error
#        (B)    (elements)                     (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
           8             2   float     sum    14.21    0.00    0.00  0e+00    14.02    0.00    0.00  0e+00
   134217728      33554432   float     sum   402.77  333.24  333.24  0e+00   401.90  333.96  333.96  0e+00
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 166.62
"""
    parsed = bandwidth.parse_all_reduce(text)
    assert (parsed.ranks, parsed.sizes, parsed.busbw, parsed.wrong) == (2, (8, 134217728), (0.0, 333.24), 0)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda t: "node01: Test NCCL failure common.cu:1005 'unhandled cuda error'\n",
            "no all_reduce_perf result table: node01",
        ),
        (
            lambda t: re.sub(r"^( *17179869184) +4294967296", r"\1", t, flags=re.M),
            "fields where the header names 13",
        ),
        (lambda t: t.replace("478.24", "fast"), "busbw: 'fast' is not a number"),
        (lambda t: t.split("# Out of bounds")[0], "no validation summary"),
        (lambda t: "\n".join(line for line in t.splitlines() if line.startswith("#")), "no rows"),
    ],
)
def test_what_is_not_an_all_reduce_table_is_an_error(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    [record] = bandwidth.all_reduce_records(
        "r", "n1", mutate(all_reduce_text()), [H100] * 8, bandwidth.floors()
    )
    assert record.status == "error" and re.search(match, record.message), record.message


def test_floors_are_data_a_group_overrides_by_model_and_key(tmp_path: Path) -> None:
    assert bandwidth.floors()[H100]["all_reduce_busbw_gbps"] == (460.0, "floors.yml")
    assert bandwidth.floors()["NVIDIA H200"]["all_reduce_busbw_gbps"] == (431.0, "floors.yml")
    group = two_nodes(
        tmp_path,
        "pcie",
        {
            "acceptance_floors": {
                H100: {"device_to_device_gbps": 50},
                "NVIDIA L40S": {"host_to_device_gbps": 20},
            }
        },
    )
    got = bandwidth.per_host(model.load(tmp_path))
    assert got["n1"] == bandwidth.floors()
    where = f"{group}: acceptance_floors (host n2)"
    assert got["n2"][H100]["device_to_device_gbps"] == (50.0, where)
    assert got["n2"][H100]["host_to_device_gbps"] == (48.0, "floors.yml")  # the other keys stay
    assert got["n2"]["NVIDIA L40S"] == {"host_to_device_gbps": (20.0, where)}
    for value, match in (
        ({H100: {"d2d": 5}}, f"{H100}: d2d: unknown floor"),
        ({H100: {"device_to_device_gbps": 0}}, f"{H100}: device_to_device_gbps: must be a number > 0"),
        ({H100: 300}, f"{H100}: must map"),
        ([H100], "must map GPU models"),
    ):
        group.write_text(yaml.safe_dump({"acceptance_floors": value}))
        with pytest.raises(UserError, match=re.escape(where) + ": " + re.escape(match)):
            bandwidth.per_host(model.load(tmp_path))
