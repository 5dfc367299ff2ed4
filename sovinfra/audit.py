"""What a site still depends on: every source a host fetches from, judged against the site (pure).

Input: the files `fleet.sources.HostSources` reads, and the inventory. A source is inside the site when
its host is an inventory host (name or address), lies in `site_networks`, or is a local path (file:).
Findings: a source outside the site, apt sources trusted blindly (`trusted=yes`) or without a pinned
key (`signed-by`), registries reached without TLS verification, a registry the site mirrors that a
containerd node would still pull from directly, and references that can move (a model revision that is
not a commit).
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Source:
    host: str
    kind: str  # apt, apt-proxy, proxy, pip, hf, registry, ntp
    file: str
    value: str


@dataclass(frozen=True)
class Finding:
    host: str
    kind: str
    file: str
    value: str
    problem: str


@dataclass(frozen=True)
class Scope:
    """What counts as the site: its hosts' names and addresses, and its own networks."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def inside(self, target: str) -> bool:
        if target.startswith(("file:", "/", "cdrom:")):
            return True
        host = urlsplit(target if "://" in target else f"//{target}").hostname or target
        if host in self.names or host in ("localhost", "127.0.0.1", "::1"):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


def scope(hosts: dict[str, dict[str, Any]], networks: list[str]) -> Scope:
    """Scope from {host: its variables} and the `site_networks` CIDRs."""
    names = set(hosts) | {str(v["ansible_host"]) for v in hosts.values() if v.get("ansible_host")}
    return Scope(frozenset(names), tuple(ipaddress.ip_network(n, strict=False) for n in networks))


def _apt_one_line(host: str, path: str, text: str) -> tuple[list[Source], list[Finding]]:
    sources, findings = [], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith(("deb ", "deb-src ")):
            continue
        options = {}
        rest = line.split(None, 1)[1]
        if rest.startswith("["):
            opts, _, rest = rest[1:].partition("]")
            options = dict(o.partition("=")[::2] for o in opts.split())
        uri = rest.split()[0] if rest.split() else ""
        sources.append(Source(host, "apt", path, uri))
        findings += _apt_trust(host, path, uri, options.get("trusted", ""), options.get("signed-by", ""))
    return sources, findings


def _apt_deb822(host: str, path: str, text: str) -> tuple[list[Source], list[Finding]]:
    sources, findings = [], []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(Source(host, "apt", path, uri))
            findings += _apt_trust(host, path, uri, fields.get("trusted", ""), fields.get("signed-by", ""))
    return sources, findings


def _apt_trust(host: str, path: str, uri: str, trusted: str, signed_by: str) -> list[Finding]:
    if trusted.lower() == "yes":
        return [Finding(host, "apt", path, uri, "trusted=yes: apt accepts anything from it")]
    if not signed_by:
        return [Finding(host, "apt", path, uri, "no signed-by: any key in apt's global keyring is accepted")]
    return []


APT_PROXY = re.compile(r'Acquire::(?:https?|ftp)::Proxy(?:::([^\s"]+))?\s+"([^"]*)"', re.IGNORECASE)


def _apt_conf(host: str, path: str, text: str) -> list[Source]:
    return [
        Source(host, "apt-proxy", path, value)
        for target, value in APT_PROXY.findall(text)
        if value and value.upper() != "DIRECT" and not target
    ]


def _environment(host: str, path: str, text: str) -> list[Source]:
    result = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() in ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy"):
            result.append(Source(host, "proxy", path, value.strip().strip("'\"")))
    return result


def _pip(host: str, path: str, text: str) -> list[Source]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return []
    urls = []
    for section in parser.sections():
        for key in ("index-url", "extra-index-url", "find-links"):
            urls += parser.get(section, key, fallback="").split()
    return [Source(host, "pip", path, u) for u in urls]


def _hf(host: str, path: str, text: str) -> list[Source]:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "HF_ENDPOINT":
            return [Source(host, "hf", path, value.strip().strip("'\""))]
    # Without HF_ENDPOINT, huggingface_hub goes to the public hub.
    return [Source(host, "hf", path, "https://huggingface.co (no HF_ENDPOINT)")]


def _containerd(host: str, path: str, text: str) -> tuple[list[Source], list[Finding]]:
    urls = re.findall(r'^\s*server\s*=\s*"([^"]+)"', text, re.M) + re.findall(
        r'^\s*\[host\."([^"]+)"\]', text, re.M
    )
    sources = [Source(host, "registry", path, u) for u in urls]
    findings = []
    if re.search(r"^\s*skip_verify\s*=\s*true", text, re.M):
        findings.append(Finding(host, "registry", path, ", ".join(urls), "skip_verify: TLS not verified"))
    return sources, findings


def _docker(host: str, path: str, text: str) -> tuple[list[Source], list[Finding]]:
    try:
        conf = json.loads(text or "{}")
    except ValueError:
        return [], [Finding(host, "registry", path, "", "not valid JSON")]
    sources = [Source(host, "registry", path, u) for u in conf.get("registry-mirrors", [])]
    findings = [
        Finding(host, "registry", path, r, "insecure registry: no TLS verification")
        for r in conf.get("insecure-registries", [])
    ]
    return sources, findings


def _podman(host: str, path: str, text: str) -> tuple[list[Source], list[Finding]]:
    sources = [
        Source(host, "registry", path, u) for u in re.findall(r'^\s*location\s*=\s*"([^"]+)"', text, re.M)
    ]
    for q in re.findall(r"^\s*unqualified-search-registries\s*=\s*\[([^\]]*)\]", text, re.M):
        sources += [Source(host, "registry", path, u) for u in re.findall(r'"([^"]+)"', q)]
    findings = []
    if re.search(r"^\s*insecure\s*=\s*true", text, re.M):
        findings.append(Finding(host, "registry", path, "", "insecure registry: no TLS verification"))
    return sources, findings


def _ntp(host: str, files: dict[str, str]) -> list[Source]:
    servers: list[Source] = []
    for path in sorted(p for p in files if "timesyncd.conf" in p):
        for line in files[path].splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "NTP":
                servers += [Source(host, "ntp", path, s) for s in value.split()]
    if not servers and any("timesyncd.conf" in p for p in files):
        servers.append(
            Source(host, "ntp", "/etc/systemd/timesyncd.conf", "the distribution's pool (no NTP=)")
        )
    return servers


def host_sources(host: str, files: dict[str, str]) -> tuple[list[Source], list[Finding]]:
    """Every source configured on one host, and the findings that need no scope (trust, TLS)."""
    sources: list[Source] = []
    findings: list[Finding] = []
    for path, text in sorted(files.items()):
        if path.endswith(".sources"):
            s, f = _apt_deb822(host, path, text)
        elif path == "/etc/apt/sources.list" or path.endswith(".list"):
            s, f = _apt_one_line(host, path, text)
        elif path.startswith("/etc/apt/apt.conf"):
            s, f = _apt_conf(host, path, text), []
        elif path == "/etc/environment":
            s, f = _environment(host, path, text), []
        elif path.endswith("pip.conf"):
            s, f = _pip(host, path, text), []
        elif path == "/etc/default/sovinfra-models":
            s, f = _hf(host, path, text), []
        elif path.endswith("hosts.toml"):
            s, f = _containerd(host, path, text)
        elif path == "/etc/containerd/config.toml":
            continue  # read to know containerd is there (unmirrored_registries)
        elif path == "/etc/docker/daemon.json":
            s, f = _docker(host, path, text)
        elif path.startswith("/etc/containers/registries.conf"):
            s, f = _podman(host, path, text)
        else:
            continue
        sources += s
        findings += f
    sources += _ntp(host, files)
    return sources, findings


def unmirrored_registries(host: str, files: dict[str, str], registries: list[str]) -> list[Finding]:
    """On a containerd node, each registry the site mirrors (container_runtime_registry_mirrors) that has
    no hosts.toml: containerd would pull it from the registry itself, out of the site."""
    if "/etc/containerd/config.toml" not in files:
        return []
    return [
        Finding(host, "registry", path, registry, "no hosts.toml: containerd pulls from the registry itself")
        for registry in registries
        if (path := f"/etc/containerd/certs.d/{registry}/hosts.toml") not in files
    ]


def judge(sources: list[Source], site: Scope) -> list[Finding]:
    """Every source outside the site."""
    return [
        Finding(s.host, s.kind, s.file, s.value, "outside the site")
        for s in sources
        if not site.inside(s.value)
    ]


def mutable_references(host: str, variables: dict[str, Any], where: str) -> list[Finding]:
    """Model revisions in the inventory that are not commits (a branch or tag can move under a site)."""
    findings = []
    for key in ("inference_services", "model_cache_models"):
        for i, entry in enumerate(variables.get(key) or []):
            if isinstance(entry, dict) and "repo" in entry:
                rev = str(entry.get("revision", "main"))
                if not COMMIT.match(rev):
                    findings.append(
                        Finding(
                            host,
                            "pin",
                            where,
                            f"{key}[{i}] {entry['repo']}@{rev}",
                            "mutable reference: not a commit",
                        )
                    )
    return findings
