"""Ansible YAML inventories: loading with file/key provenance, and validation against role specs."""
