"""Packaging the node health agent: a wheelhouse the control node builds and ships to GPU nodes."""
