#!/usr/bin/env bash
# Run on a machine with a real NVIDIA GPU (the device tool): the health agent on real NVML, idle
# and under a CUDA load, plus what nvidia-smi says, written to $OUT for fixtures. Needs python3 with
# nvidia-ml-py, click and PyYAML; torch for the CUDA load. Serials are redacted afterwards, not here.
set -u
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  echo "== uname: $(uname -a)"
  nvidia-smi -L
  python3 -c "import pynvml, sys; print('nvidia-ml-py', pynvml.__version__ if hasattr(pynvml,'__version__') else '?', sys.version)"
  echo "== tools: $(command -v nvcc dcgmi nv-hostengine nvbandwidth all_reduce_perf | tr '\n' ' ')"
  dpkg-query -W -f '${Package} ${Version}\n' 2>/dev/null | grep -E -i 'nvidia|cuda|dcgm|nccl|fabric' | head -40
} 2>&1 | tee "$OUT/env.txt"
nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1

dump() {  # raw readings, for replay through the pure checks in tests
  python3 - "$1" <<'PY'
import json, sys, time
from sovinfra.health import collect
t = time.perf_counter()
reading = collect.collect(xid_window_s=0.0)
elapsed = time.perf_counter() - t
json.dump(reading.to_dict(), open(sys.argv[1], "w"), indent=2)
print(f"collect: {elapsed * 1000:.1f} ms, {len(reading.gpus)} GPU(s), errors: {reading.collect_errors}")
PY
}

echo "== idle"
dump "$OUT/readings_idle.json"
python3 -m sovinfra health --json --prometheus "$OUT/health_idle.prom" > "$OUT/health_idle.json"; echo "agent rc=$?"
python3 -m sovinfra health; echo "agent rc=$?"
python3 -m sovinfra health --xid-window 2 > /dev/null; echo "agent with 2 s xid window rc=$?"

echo "== CUDA check and load"
python3 - > "$OUT/cuda.txt" 2>&1 <<'PY' &
import time, torch
assert torch.cuda.is_available(), "CUDA not available"
print("device:", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
ref = (a[:64].float() @ b[:, :64].float())
got = (a @ b)[:64, :64].float()
print("matmul max rel err:", ((got - ref).abs().max() / ref.abs().max()).item())
end = time.time() + 25
n = 0
torch.cuda.synchronize(); t = time.perf_counter()
while time.time() < end:
    for _ in range(50):
        a @ b
    torch.cuda.synchronize(); n += 50
dt = time.perf_counter() - t
print(f"bf16 matmul: {n * 2 * 8192**3 / dt / 1e12:.0f} TFLOP/s over {dt:.1f} s")
PY
load=$!
sleep 12
dump "$OUT/readings_load.json"
python3 -m sovinfra health --json > "$OUT/health_load.json"; echo "agent under load rc=$?"
nvidia-smi --query-gpu=pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,clocks_event_reasons.active,power.draw,temperature.gpu --format=csv
wait $load
cat "$OUT/cuda.txt"
echo "== kernel log readable: $(python3 -c 'from sovinfra.health import collect; print(collect.read_kernel_log()[1])')"

echo "== acceptance GPU stages: the product's own node commands (dcgmi diag, nvbandwidth, all_reduce_perf)"
shim=""
if ! python3 -c 'import pyinfra' 2>/dev/null; then
  # The fact classes only subclass pyinfra's FactBase; where pyinfra is absent, a bare base class is enough
  # to read their command lines (what the fleet runs over ssh), which is all this script needs from them.
  shim=$(mktemp -d); mkdir "$shim/pyinfra"; : > "$shim/pyinfra/__init__.py"
  echo 'class FactBase: ...' > "$shim/pyinfra/api.py"
fi
gpus=$(nvidia-smi -L | grep -c '^GPU ')
stage() {  # name, python expression for the command; raw output kept as the stage fact returns it
  local cmd
  cmd=$(PYTHONPATH=$PYTHONPATH${shim:+:$shim} python3 -c "from sovinfra.fleet import dcgm, bandwidth; print($2)") || return
  echo "-- $1: $cmd"
  local t=$SECONDS
  timeout 200 bash -c "$cmd" > "$OUT/$1.txt" 2>&1; echo "$1 rc=$? in $((SECONDS - t)) s, $(wc -c < "$OUT/$1.txt") bytes"
  head -c 600 "$OUT/$1.txt"; echo
}
stage dcgm_diag_r1 "dcgm.DcgmDiag().command(1)"
stage nvbandwidth "bandwidth.NvBandwidth().command()"
stage all_reduce_perf "bandwidth.AllReduce().command($gpus)"
python3 - "$OUT" <<'PY'
import sys
from pathlib import Path
from sovinfra.acceptance import bandwidth, dcgm
out = Path(sys.argv[1])
for name, parse in (("dcgm_diag_r1", dcgm.parse), ("nvbandwidth", bandwidth.parse_nvbandwidth),
                    ("all_reduce_perf", bandwidth.parse_all_reduce)):
    path = out / f"{name}.txt"
    if not path.exists():
        print(f"{name}: not run")
        continue
    try:
        print(f"{name}: parsed: {parse(path.read_text())!r:.800}")
    except ValueError as exc:
        print(f"{name}: not parsed: {exc}")
PY
