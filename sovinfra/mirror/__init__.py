"""The internal model mirror: a content-addressed store, import/verify/export, served over the HF protocol."""
