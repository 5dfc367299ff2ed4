"""Inference services: what each host runs (pure planning for the inference role)."""
