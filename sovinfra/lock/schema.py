"""The lock file's format: read and checked entry by entry (errors name the file and the entry), written
in a stable order so that a change reviews as a diff. Pure, except `load` and `write`.

  format: 1
  sovinfra: {version, commit}                the project that wrote it
  packages_snapshot: <id>                    the site package snapshot hosts install from
  classes:                                   hosts in the same groups run the same things
    <group+group>:
      hosts: [host, ...]
      packages: {name: {version, sha256}}    sha256 of the .deb in the snapshot ("" when not from it)
      holds: [name, ...]                     packages apt must not move
      nvidia: {component: {requested, resolved}}
      venvs: {path: {distribution: {version, sha256}}}
      models: [repo@commit, ...]
      images: [ref@sha256:..., ...]
  models: {repo@commit: {path: sha256}}
  hosts: {host: {class, files: {path: sha256}, units: {unit: "active enabled"}, kernel, gpus: [uuid],
                 machine: DMI product uuid}}
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from sovinfra import atomic
from sovinfra.errors import UserError

FORMAT = 1
FILE_NAME = "sovinfra.lock"
HEADER = "# Written by `sovinfra lock`: what this site runs. Review changes as diffs; do not edit by hand.\n"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODEL_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*@[0-9a-f]{40}$")
IMAGE_PIN = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
TOP = {"format", "sovinfra", "packages_snapshot", "classes", "models", "hosts"}
CLASS = {"hosts", "packages", "holds", "nvidia", "venvs", "models", "images"}
HOST = {"class", "files", "units", "kernel", "gpus", "machine"}


class LockError(UserError):
    """A lock that cannot be used; the message names the file and the entry."""


def path_for(inventory_dir: Path) -> Path:
    return inventory_dir / FILE_NAME


def _mapping(value: Any, where: str, keys: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LockError(f"{where}: expected a mapping, found {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise LockError(f"{where}: {key!r} is not a name")
    if keys is not None:
        unknown = sorted(set(value) - keys)
        missing = sorted(keys - set(value))
        if unknown:
            raise LockError(f"{where}.{unknown[0]}: not a lock entry")
        if missing:
            raise LockError(f"{where}.{missing[0]}: missing")
    return value


def _string(value: Any, where: str, pattern: re.Pattern[str] | None = None, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise LockError(f"{where}: expected a{'' if empty else ' non-empty'} string, found {value!r}")
    if pattern and value and not pattern.match(value):
        raise LockError(f"{where}: {value!r} is not of the form {pattern.pattern}")
    return value


def _strings(value: Any, where: str, pattern: re.Pattern[str] | None = None) -> list[str]:
    if not isinstance(value, list):
        raise LockError(f"{where}: expected a list, found {type(value).__name__}")
    return [_string(v, f"{where}[{n}]", pattern, empty=False) for n, v in enumerate(value)]


def _pinned(value: Any, where: str) -> None:
    entry = _mapping(value, where, {"version", "sha256"})
    _string(entry["version"], f"{where}.version", empty=False)
    _string(entry["sha256"], f"{where}.sha256", SHA256)


def validate(doc: Any, where: str) -> dict[str, Any]:
    """The lock document, or LockError naming the first entry that is wrong."""
    doc = _mapping(doc, where, TOP)
    if doc["format"] != FORMAT:
        raise LockError(f"{where}: format: {doc['format']!r}; this sovinfra reads format {FORMAT}")
    project = _mapping(doc["sovinfra"], f"{where}: sovinfra", {"version", "commit"})
    for key in ("version", "commit"):
        _string(project[key], f"{where}: sovinfra.{key}")
    _string(doc["packages_snapshot"], f"{where}: packages_snapshot")
    models = _mapping(doc["models"], f"{where}: models")
    for pin, files in models.items():
        _string(pin, f"{where}: models.{pin}", MODEL_PIN)
        for path, sha in _mapping(files, f"{where}: models.{pin}").items():
            _string(sha, f"{where}: models.{pin}.{path}", SHA256, empty=False)
    classes = _mapping(doc["classes"], f"{where}: classes")
    for name, body in classes.items():
        at = f"{where}: classes.{name}"
        body = _mapping(body, at, CLASS)
        _strings(body["hosts"], f"{at}.hosts")
        _strings(body["holds"], f"{at}.holds")
        for pkg, entry in _mapping(body["packages"], f"{at}.packages").items():
            _pinned(entry, f"{at}.packages.{pkg}")
        for part, entry in _mapping(body["nvidia"], f"{at}.nvidia").items():
            entry = _mapping(entry, f"{at}.nvidia.{part}", {"requested", "resolved"})
            _string(entry["requested"], f"{at}.nvidia.{part}.requested")
            _string(entry["resolved"], f"{at}.nvidia.{part}.resolved")
        for venv, dists in _mapping(body["venvs"], f"{at}.venvs").items():
            for dist, entry in _mapping(dists, f"{at}.venvs.{venv}").items():
                _pinned(entry, f"{at}.venvs.{venv}.{dist}")
        for n, pin in enumerate(_strings(body["models"], f"{at}.models", MODEL_PIN)):
            if pin not in models:
                raise LockError(f"{at}.models[{n}]: {pin} has no entry under models")
        _strings(body["images"], f"{at}.images", IMAGE_PIN)
    for host, entry in _mapping(doc["hosts"], f"{where}: hosts").items():
        entry = _mapping(entry, f"{where}: hosts.{host}", HOST)
        if entry["class"] not in classes:
            raise LockError(f"{where}: hosts.{host}.class: {entry['class']!r} is not under classes")
        if host not in classes[entry["class"]]["hosts"]:
            raise LockError(f"{where}: hosts.{host}: not listed in classes.{entry['class']}.hosts")
        for path, sha in _mapping(entry["files"], f"{where}: hosts.{host}.files").items():
            _string(sha, f"{where}: hosts.{host}.files.{path}", SHA256, empty=False)
        for unit, unit_state in _mapping(entry["units"], f"{where}: hosts.{host}.units").items():
            _string(unit_state, f"{where}: hosts.{host}.units.{unit}", empty=False)
        _string(entry["kernel"], f"{where}: hosts.{host}.kernel")
        _strings(entry["gpus"], f"{where}: hosts.{host}.gpus")
        _string(entry["machine"], f"{where}: hosts.{host}.machine")
    return doc


def parse(text: str, where: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise LockError(f"{where}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return validate(doc, where)


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LockError(f"{path}: no lock; write one with `sovinfra lock`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: cannot be read: {exc}") from None
    return parse(text, str(path))


def dump(doc: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, width=1000)


def write(path: Path, doc: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a lock."""
    atomic.write_text(path, dump(doc))


def diff(old: dict[str, Any], new: dict[str, Any], name: str) -> str:
    return "".join(
        difflib.unified_diff(
            dump(old).splitlines(keepends=True), dump(new).splitlines(keepends=True), name, f"{name} (now)"
        )
    )
