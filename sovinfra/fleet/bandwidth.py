"""NVIDIA's bandwidth tests on a node (pyinfra facts): what nvbandwidth and all_reduce_perf printed, as
text; a tool not on the node's PATH answers a marker instead (the site provides these tools)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from sovinfra.acceptance.bandwidth import NOT_INSTALLED, TESTCASES


def _missing(tool: str) -> str:
    return f"command -v {tool} >/dev/null || {{ echo {NOT_INSTALLED}; exit 0; }}"


class NvBandwidth(FactBase):
    """`nvbandwidth -j` for the copy-engine testcases acceptance judges (its JSON on stdout)."""

    def command(self) -> str:
        cases = " ".join(f"-t {shlex.quote(name)}" for name in TESTCASES)
        return f"{_missing('nvbandwidth')}; nvbandwidth -j {cases} 2>/dev/null; true"

    def process(self, output: list[str]) -> str:
        return "\n".join(output)


class AllReduce(FactBase):
    """nccl-tests' all_reduce_perf over `gpus` GPUs (the node's, as its health report counts them), 1 GiB
    to 16 GiB (the floors are for 16 GB), its table on stdout; NCCL's own debug lines kept out of it."""

    def command(self, gpus: int) -> str:
        run = f"env -u NCCL_DEBUG all_reduce_perf -b 1G -e 16G -f 2 -g {int(gpus)} 2>&1"
        return f"{_missing('all_reduce_perf')}; {run}; true"

    def process(self, output: list[str]) -> str:
        return "\n".join(output)
