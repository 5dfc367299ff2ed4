"""Read-only fan-out over the fleet through pyinfra: facts, health collection, drift."""
