"""Reading an Ansible YAML inventory directory, remembering which file every variable came from."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sovinfra.errors import UserError

GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GROUP_KEYS = {"hosts", "vars", "children"}
SITE_GROUPS = ("gpu_nodes", "model_mirror", "inference")


class _Loader(yaml.SafeLoader):
    """safe_load plus Ansible's !vault and !unsafe tags (kept opaque: never decrypted here)."""


class VaultText(str):
    """An Ansible-vault value: reads as "<vault>"; the ciphertext is kept for whoever must decrypt it."""

    ciphertext: str

    def __new__(cls, ciphertext: str) -> VaultText:
        obj = super().__new__(cls, "<vault>")
        obj.ciphertext = ciphertext
        return obj


def _opaque(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    return VaultText(text) if node.tag == "!vault" else text


_Loader.add_constructor("!vault", _opaque)
_Loader.add_constructor("!unsafe", _opaque)


@dataclass
class VarSource:
    """Variables set in one place: a file, and where in it (a group's vars, a host's line)."""

    file: Path
    scope: str  # "group gpu_nodes", "host gpu1"
    values: dict[str, Any]


@dataclass
class Inventory:
    path: Path
    hosts_file: Path
    groups: dict[str, set[str]] = field(default_factory=dict)  # group -> direct hosts
    children: dict[str, set[str]] = field(default_factory=dict)  # group -> child groups
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> its inline vars
    sources: list[VarSource] = field(default_factory=list)

    def hosts_in(self, group: str) -> set[str]:
        seen: set[str] = set()
        todo = [group]
        result: set[str] = set()
        while todo:
            g = todo.pop()
            if g in seen:
                continue
            seen.add(g)
            result |= self.groups.get(g, set())
            todo.extend(self.children.get(g, set()))
        return result

    def groups_of(self, host: str) -> list[str]:
        return sorted(g for g in self.groups if host in self.hosts_in(g))


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{where}: not valid YAML: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc


def _hosts_file(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("hosts.yml", "hosts.yaml"):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: no inventory here (expected a hosts.yml file or a directory holding one)")


def _where(file: Path, trail: list[str]) -> str:
    return f"{file}: {'.'.join(trail)}" if trail else str(file)


def _vars_mapping(value: Any, file: Path, trail: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{_where(file, trail)}: must be a mapping of variables, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise UserError(f"{_where(file, [*trail, str(key)])}: not a valid variable name")
    return value


def _parse_group(inv: Inventory, name: Any, body: Any, file: Path, trail: list[str]) -> None:
    if not isinstance(name, str) or not GROUP_NAME.match(name):
        raise UserError(f"{_where(file, trail)}: group name {name!r} must be letters, digits and _")
    inv.groups.setdefault(name, set())
    inv.children.setdefault(name, set())
    if body is None:
        return
    if not isinstance(body, dict):
        raise UserError(f"{_where(file, trail)}: a group must be a mapping (hosts/vars/children)")
    for key in body:
        if key not in GROUP_KEYS:
            where = _where(file, [*trail, str(key)])
            raise UserError(f"{where}: unknown key (a group has hosts, vars, children)")
    hosts = body.get("hosts")
    if hosts is not None and not isinstance(hosts, dict):
        raise UserError(f"{_where(file, [*trail, 'hosts'])}: must be a mapping of host names")
    for host, host_vars in (hosts or {}).items():
        htrail = [*trail, "hosts", str(host)]
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise UserError(f"{_where(file, htrail)}: not a valid host name")
        values = _vars_mapping(host_vars, file, htrail)
        inv.groups[name].add(host)
        inv.hosts.setdefault(host, {}).update(values)
        if values:
            inv.sources.append(VarSource(file, f"host {host}", values))
    group_vars = _vars_mapping(body.get("vars"), file, [*trail, "vars"])
    if group_vars:
        inv.sources.append(VarSource(file, f"group {name}", group_vars))
    children = body.get("children")
    if children is not None and not isinstance(children, dict):
        raise UserError(f"{_where(file, [*trail, 'children'])}: must be a mapping of group names")
    for child, child_body in (children or {}).items():
        _parse_group(inv, child, child_body, file, [*trail, "children", str(child)])
        inv.children[name].add(child)


def _vars_files(directory: Path) -> list[tuple[str, Path]]:
    """(name, file) for name.yml files and name/ directories of yml files, sorted like Ansible."""
    found: list[tuple[str, Path]] = []
    if not directory.is_dir():
        return found
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and entry.suffix in (".yml", ".yaml"):
            found.append((entry.stem, entry))
        elif entry.is_dir():
            found += [(entry.name, f) for f in sorted(entry.iterdir()) if f.suffix in (".yml", ".yaml")]
    return found


def load(path: Path) -> Inventory:
    """Load hosts.yml plus group_vars/ and host_vars/ beside it; structural errors name file and key."""
    hosts_file = _hosts_file(path)
    inv = Inventory(path=path, hosts_file=hosts_file)
    doc = read_yaml(hosts_file)
    if not isinstance(doc, dict):
        raise UserError(f"{hosts_file}: must be a mapping of groups (usually one key, all:)")
    inv.groups["all"] = set()
    inv.children["all"] = set()
    for name, body in doc.items():
        _parse_group(inv, name, body, hosts_file, [str(name)])
        if name != "all":
            inv.children["all"].add(name)
    inv.groups["all"] |= set(inv.hosts)
    base = hosts_file.parent
    for group, file in _vars_files(base / "group_vars"):
        if group not in inv.groups:
            raise UserError(f"{file}: no group named {group!r} in {hosts_file}")
        values = _vars_mapping(read_yaml(file), file, [])
        inv.sources.append(VarSource(file, f"group {group}", values))
    for host, file in _vars_files(base / "host_vars"):
        if host not in inv.hosts:
            raise UserError(f"{file}: no host named {host!r} in {hosts_file}")
        values = _vars_mapping(read_yaml(file), file, [])
        inv.sources.append(VarSource(file, f"host {host}", values))
    return inv


def _depth(inv: Inventory, group: str) -> int:
    parents = [g for g, kids in inv.children.items() if group in kids]
    return 0 if not parents or group == "all" else 1 + max(_depth(inv, p) for p in parents)


def _sources_for(inv: Inventory, host: str) -> list[VarSource]:
    """Where a host's variables come from, lowest precedence first: all, groups by depth and name, host."""
    groups = sorted(inv.groups_of(host), key=lambda g: (g != "all", _depth(inv, g), g))
    ordered = [src for group in groups for src in inv.sources if src.scope == f"group {group}"]
    return ordered + [src for src in inv.sources if src.scope == f"host {host}"]


def host_vars(inv: Inventory, host: str) -> dict[str, Any]:
    """A host's variables with Ansible's precedence."""
    merged: dict[str, Any] = {}
    for source in _sources_for(inv, host):
        merged.update(source.values)
    return merged


def var_file(inv: Inventory, host: str, key: str) -> Path:
    """The file that sets the value a host sees for `key` (for error messages)."""
    setting = [src.file for src in _sources_for(inv, host) if key in src.values]
    return setting[-1] if setting else inv.hosts_file


def _pattern_hosts(inv: Inventory, term: str) -> set[str]:
    """One term of an Ansible host pattern: a host or group name, `all`, a wildcard, or `~regex`."""
    groups = set(inv.groups) | set(inv.children)
    if term in ("all", "*"):
        return set(inv.hosts)
    if term in groups:
        return inv.hosts_in(term)
    if term in inv.hosts:
        return {term}
    if term.startswith("~"):
        try:
            regex = re.compile(term[1:])
        except re.error as exc:
            raise UserError(f"--limit: {term!r} is not a regular expression ({exc})") from exc
        names = [n for n in (*inv.hosts, *groups) if regex.match(n)]
    else:
        names = fnmatch.filter([*inv.hosts, *groups], term) if any(c in term for c in "*?[") else []
    found: set[str] = set()
    for name in names:
        found |= inv.hosts_in(name) if name in groups else {name}
    if not found:
        raise UserError(f"--limit: {term!r} matches no host or group of {inv.hosts_file}")
    return found


def select_hosts(inv: Inventory, limit: str | None, within: str = "all") -> list[str]:
    """Hosts of group `within`, narrowed by --limit, an Ansible host pattern as `apply` passes it on:
    terms split by `,` or `:`; `!term` excludes, `&term` intersects (after every plain term), as Ansible
    orders them; names, `all`, wildcards (`gpu*`) and `~regex`."""
    hosts = inv.hosts_in(within)
    if not limit:
        return sorted(hosts)
    terms = [t.strip() for t in re.split(r"[,:]", limit) if t.strip()]
    plain = [t for t in terms if not t.startswith(("!", "&"))]
    chosen: set[str] = set()
    for term in plain:
        chosen |= _pattern_hosts(inv, term)
    if not plain:  # only `!`/`&` terms: Ansible starts from nothing too, so say so
        raise UserError(f"--limit: {limit!r} names no hosts to start from (add a host, group or all)")
    for term in terms:
        if term.startswith("&"):
            chosen &= _pattern_hosts(inv, term[1:])
        elif term.startswith("!"):
            chosen -= _pattern_hosts(inv, term[1:])
    outside = chosen - hosts
    if outside:
        raise UserError(f"--limit: not in group {within}: {', '.join(sorted(outside))}")
    return sorted(chosen)
