"""GPU health: NVML readings (collect), pure judgement (checks), and reports (JSON, Prometheus)."""
