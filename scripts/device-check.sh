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
