"""`sovinfra mirror`: the internal model mirror (import, ls, verify, export, serve --dev), wheelhouse,
package snapshots and container images."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.inventory import defaults

if TYPE_CHECKING:
    from sovinfra.inventory import model

F = TypeVar("F", bound=Callable[..., Any])


def default_store() -> Path:
    """SOVINFRA_MIRROR_STORE, else the site's default control store: `site_store` in roles/site, which the
    roles ship from (one source). Read when needed: on a mirror host, where this CLI runs from the agent's
    venv with --store and no roles/, it never is."""
    env = os.environ.get("SOVINFRA_MIRROR_STORE")
    if env:
        return Path(env)
    return Path(str(defaults.role_defaults(paths.project_root() / "roles", "site")["site_store"]))


def store_option(fn: F) -> F:
    return click.option(
        "--store",
        "store_path",
        type=click.Path(file_okay=False, path_type=Path),
        default=default_store,
        show_default="SOVINFRA_MIRROR_STORE, else the site's site_store",
        help="the mirror's store directory",
    )(fn)


def _store(path: Path, create: bool = False) -> Any:
    """The store at `path`; only import makes a new one (a typo must not read as an empty store)."""
    from sovinfra.mirror.store import Store

    if not create and not path.is_dir():
        raise UserError(f"{path}: no mirror store here (--store, SOVINFRA_MIRROR_STORE)")
    return Store(path)


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def mirror() -> None:
    """The internal model mirror, served over the Hugging Face protocol."""


@mirror.command("import")
@click.argument("source")
@click.option("--repo", help="ORG/NAME for a local folder")
@click.option(
    "--revision", default="main", show_default=True, help="branch/tag name (or commit for a hub repo)"
)
@click.option("--allow-pickle", is_flag=True, help="accept pickle-based weights (.bin/.pt/.pkl)")
@click.option(
    "--trusted-signers",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="bundles: ssh allowed_signers file; the bundle must carry a valid signature",
)
@store_option
def import_(
    source: str,
    repo: str | None,
    revision: str,
    allow_pickle: bool,
    trusted_signers: Path | None,
    store_path: Path,
) -> None:
    """Import SOURCE: a local model folder, an export bundle, or a hub repo id (needs HF_ENDPOINT/online)."""
    from sovinfra.mirror import importer, publish

    store = _store(store_path, create=True)
    path = Path(source)
    if path.is_dir() and (path / "manifest.json").exists():
        importer.import_bundle(store, path, trusted_signers, _log)
    elif path.is_dir():
        if not repo:
            raise UserError(f"{source}: a local folder needs --repo ORG/NAME")
        importer.import_folder(store, path, repo, revision, allow_pickle, _log)
    elif path.exists():
        raise UserError(f"{source}: not a directory (a model folder or an export bundle)")
    else:
        importer.import_hub(store, repo or source, revision, allow_pickle, _log)
    publish.publish(store)


@mirror.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def ls(as_json: bool, store_path: Path) -> None:
    """Repos, their refs and commits."""
    store = _store(store_path)
    rows = []
    for repo in store.repos():
        for sha in store.commits(repo):
            files = store.commit(repo, sha).files
            refs = sorted(r for r, c in store.refs(repo).items() if c == sha)
            rows.append(
                {
                    "repo": repo,
                    "commit": sha,
                    "refs": refs,
                    "files": len(files),
                    "bytes": sum(f.size for f in files),
                }
            )
    if as_json:
        click.echo(json.dumps({"store": str(store_path), "repos": rows}, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['repo']:<40} {r['commit'][:12]} {','.join(r['refs']) or '-':<12} {r['files']:>5} files "
            f"{r['bytes'] / 2**20:>10.1f} MiB"
        )


@mirror.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def verify(as_json: bool, store_path: Path) -> None:
    """Re-hash every file; exit 1 on any mismatch."""
    from sovinfra.mirror.verify import verify as run_verify

    checked, bad = run_verify(_store(store_path))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "checked": checked,
                    "ok": not bad,
                    "mismatches": [
                        {"sha256": m.sha256, "problem": m.problem, "used_by": list(m.used_by)} for m in bad
                    ],
                },
                indent=2,
            )
        )
    else:
        for m in bad:
            click.echo(f"{m.problem.upper()} {m.sha256}: {', '.join(m.used_by)}")
        click.echo(f"{checked} blobs checked, {len(bad)} bad")
    if bad:
        raise SystemExit(1)


@mirror.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.argument("repos", nargs=-1)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="ssh private key that signs the manifest (ssh-keygen -Y sign)",
)
@click.option(
    "--part-size",
    type=click.IntRange(1 << 20),
    default=4 * 2**30 - 1,
    show_default="FAT32's 4 GiB - 1",
    help="split files larger than this many bytes into .partNNN pieces",
)
@store_option
def export(
    dest: Path, repos: tuple[str, ...], sign_key: Path | None, part_size: int, store_path: Path
) -> None:
    """Write a bundle for removable media: models (blobs), package snapshots, wheels, manifest, checksum."""
    from sovinfra.mirror import bundle

    manifest = bundle.export(_store(store_path), dest, list(repos), sign_key, part_size)
    click.echo(
        f"{dest}: {len(manifest['repos'])} repo(s), {len(bundle.blobs(manifest))} blobs, "
        f"{len(manifest['files'])} site files"
    )


@mirror.command()
@click.option(
    "--dev", is_flag=True, required=True, help="a throwaway nginx on 127.0.0.1 (the role serves sites)"
)
@click.option("--port", type=click.IntRange(1, 65535), help="port (default: a free one)")
@store_option
def serve(dev: bool, port: int | None, store_path: Path) -> None:
    """Serve the store over the Hugging Face protocol until Ctrl-C/SIGTERM."""
    from sovinfra.mirror import publish, serve

    store = _store(store_path)
    site = publish.publish(store)
    wheels = store.root / "wheels" if (store.root / "wheels" / "simple").is_dir() else None
    with serve.DevServer(site, store.root / "blobs" / "sha256", port, wheels) as server:
        click.echo(f"HF_ENDPOINT={server.url}", err=False)
        if wheels:
            click.echo(f"PIP_INDEX_URL={server.url}/simple/", err=False)
        serve.wait_forever(server)


@mirror.command()
@click.argument("repo")
@click.option("--revision", default="main", show_default=True, help="commit (pin) or branch")
@click.option(
    "--endpoint", envvar="HF_ENDPOINT", required=True, help="the mirror's URL (default: HF_ENDPOINT)"
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="the node's Hugging Face hub cache (HF_HUB_CACHE)",
)
@click.option(
    "--streams", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel downloads"
)
@click.option("--rehash", is_flag=True, help="re-hash files already in the cache (catches bit rot)")
@click.option(
    "--via",
    default="",
    metavar="URL",
    help="a rack cache in front of the mirror: the files' bytes come through it, the sha256s from the mirror",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def pull(
    repo: str,
    revision: str,
    endpoint: str,
    cache_dir: Path,
    streams: int,
    rehash: bool,
    via: str,
    as_json: bool,
) -> None:
    """On a node: fetch REPO into the HF cache, verify every sha256, then mark it ready."""
    from dataclasses import asdict

    from sovinfra.mirror.pull import pull as run_pull

    result = run_pull(endpoint, repo, revision, cache_dir, streams, rehash, via=via)
    if as_json:
        click.echo(json.dumps(asdict(result)))
    else:
        state = "pulled" if result.changed else "up to date"
        click.echo(
            f"{state}: {repo}@{result.commit} ({len(result.downloaded)} files, {result.bytes} bytes fetched)"
        )


@mirror.command("publish")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def publish_(as_json: bool, store_path: Path) -> None:
    """Regenerate what nginx serves (HF API files, links, header maps, wheel index); says if it changed."""
    from sovinfra.mirror import publish
    from sovinfra.mirror import wheels as wheelhouse

    changed = publish.publish_if_changed(_store(store_path))
    changed = wheelhouse.index_if_changed(store_path) or changed
    if as_json:
        click.echo(json.dumps({"changed": changed}))
    else:
        click.echo("published" if changed else "up to date")


@mirror.group()
def wheels() -> None:
    """The site's wheelhouse: wheels nodes install from, served by the mirror as /simple/ (PEP 503)."""


@wheels.command("add")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--for",
    "targets",
    multiple=True,
    metavar="X.Y[:ARCH]",
    help="download the binary wheels (and their dependencies') for nodes of this Python and architecture "
    "(x86_64, aarch64) instead of building for this one; repeatable",
)
@store_option
def wheels_add(sources: tuple[str, ...], targets: tuple[str, ...], store_path: Path) -> None:
    """Add SOURCES: wheel files (copied), or requirements / source folders (built here once with pip, or
    downloaded as binary wheels `--for` other nodes)."""
    from sovinfra.mirror import wheels as wheelhouse

    parsed = []
    for target in targets:
        try:
            parsed.append(wheelhouse.parse_target(target))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from exc
    for name in wheelhouse.add(store_path, list(sources), _log, targets=parsed):
        click.echo(f"added {name}")


@wheels.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def wheels_ls(as_json: bool, store_path: Path) -> None:
    """List the wheelhouse: file and sha256."""
    from sovinfra.mirror import wheels as wheelhouse

    files = wheelhouse.listing(store_path)
    if as_json:
        click.echo(json.dumps(files, indent=2))
        return
    for name, sha in files.items():
        click.echo(f"{sha[:16]}  {name}")


@mirror.command("key")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def key_(as_json: bool, store_path: Path) -> None:
    """Make the site's package signing key once (ed25519) and print its fingerprint; it stays in the store."""
    from sovinfra.mirror import sitekey

    key = sitekey.ensure(store_path)
    if as_json:
        click.echo(
            json.dumps({"fingerprint": key.fingerprint, "public": str(key.public), "created": key.created})
        )
    else:
        click.echo(f"{'created' if key.created else 'exists'}: {key.fingerprint} ({key.public})")


@mirror.group()
def packages() -> None:
    """OS packages as frozen, signed snapshots (aptly), served by the mirror host at /packages/site."""


def _snapshot_rows(rows: list[Any]) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [asdict(r) for r in rows]


@packages.command("sync")
@click.option("-i", "--inventory", "inventory", help="the site's inventory (its package need and upstreams)")
@click.option(
    "--installed",
    is_flag=True,
    help="also hold every package the inventory's hosts have installed (read over ssh; all must answer)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def packages_sync(inventory: str | None, installed: bool, as_json: bool, store_path: Path) -> None:
    """Mirror the upstreams filtered to what the site installs; publish a new signed snapshot as current."""
    from sovinfra import paths
    from sovinfra.inventory import site
    from sovinfra.mirror import apt_plan, apt_snapshots

    inv, _ = site.load_checked(site.resolve(inventory))
    roles_dir = paths.project_root() / "roles"
    upstreams, arches = apt_plan.site_upstreams(inv, roles_dir)
    needed = apt_plan.needed_packages(inv, roles_dir)
    versioned = apt_plan.nvidia_need(inv, roles_dir)
    if installed:
        needed = sorted({*needed, *apt_plan.installed_need(_installed(inv), versioned)})
    info = apt_snapshots.sync(
        store_path,
        upstreams,
        needed,
        arches,
        _log,
        versioned=versioned,
    )
    if as_json:
        click.echo(json.dumps(_snapshot_rows([info])[0]))
    else:
        click.echo(f"published {info.id}: {info.packages} packages, {info.bytes} bytes (current)")


def _installed(inv: model.Inventory) -> dict[str, dict[str, Any]]:
    """{host: {package: versions}} of every inventory host; one that does not answer is an error."""
    from pyinfra.facts.deb import DebPackages

    from sovinfra.fleet.connection import read_all

    reads = read_all(inv, sorted(inv.hosts), DebPackages)
    silent = sorted(h for h, r in reads.items() if not r.reachable)
    if silent:
        raise UserError(
            f"--installed: {', '.join(silent)} did not answer ({reads[silent[0]].error}); "
            "their packages cannot be read"
        )
    return {h: r.value or {} for h, r in reads.items()}


@packages.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def packages_ls(as_json: bool, store_path: Path) -> None:
    """List the published snapshots, newest last; * marks the current one."""
    from sovinfra.mirror import apt_snapshots

    rows = apt_snapshots.listing(store_path)
    if as_json:
        click.echo(json.dumps(_snapshot_rows(rows), indent=2))
        return
    for r in rows:
        click.echo(f"{'*' if r.current else ' '} {r.id}  {r.packages:5d} packages  {r.bytes / 1e6:8.1f} MB")


@packages.command("prune")
@click.option("--keep", default=3, show_default=True, type=click.IntRange(1), help="newest snapshots to keep")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def packages_prune(keep: int, as_json: bool, store_path: Path) -> None:
    """Drop older snapshots (never the current one) and the packages only they held."""
    from sovinfra.mirror import apt_snapshots

    dropped = apt_snapshots.prune(store_path, keep)
    if as_json:
        click.echo(json.dumps({"dropped": dropped}))
    else:
        click.echo("\n".join(f"dropped {i}" for i in dropped) or "nothing to prune")


@mirror.group()
def images() -> None:
    """Container images by digest, served to nodes by the mirror host's registry (their names unchanged)."""


def _image_rows(rows: list[Any]) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [{**asdict(r), "reference": r.reference} for r in rows]


@images.command("add")
@click.argument("sources", nargs=-1, required=True)
@click.option("--name", help="REGISTRY/REPO[:TAG] for an archive that does not name its image (one source)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def images_add(sources: tuple[str, ...], name: str | None, as_json: bool, store_path: Path) -> None:
    """Add SOURCES (OCI or docker archives, or registry references) with every platform and digest kept."""
    from sovinfra.mirror import images as site_images

    if name and len(sources) > 1:
        raise UserError("--name names one image: give one source with it")
    added = [site_images.add(store_path, source, name, _log) for source in sources]
    if as_json:
        click.echo(json.dumps(_image_rows(added), indent=2))
        return
    for image in added:
        click.echo(f"added {image.reference}" + (f" ({image.tag})" if image.tag else ""))


@images.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def images_ls(as_json: bool, store_path: Path) -> None:
    """List the site's images: reference by digest, tag, platforms."""
    from sovinfra.mirror import images as site_images

    rows = site_images.records(store_path)
    if as_json:
        click.echo(json.dumps(_image_rows(rows), indent=2))
        return
    for r in rows:
        click.echo(f"{r.reference}  {r.tag or '-'}  {','.join(sorted(r.platforms))}")


@images.command("rm")
@click.argument("references", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def images_rm(references: tuple[str, ...], as_json: bool, store_path: Path) -> None:
    """Remove images (NAME, NAME:TAG or NAME@DIGEST) and the blobs no other image uses."""
    from sovinfra.mirror import images as site_images

    gone = [image for ref in references for image in site_images.remove(store_path, ref)]
    if as_json:
        click.echo(json.dumps(_image_rows(gone), indent=2))
        return
    for image in gone:
        click.echo(f"removed {image.reference}")


@images.command("push")
@click.option(
    "--registry", required=True, help="HOST:PORT of the registry to fill (plain HTTP: its loopback)"
)
@click.option("--dry-run", is_flag=True, help="say what would be pushed and removed; change nothing")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@store_option
def images_push(registry: str, dry_run: bool, as_json: bool, store_path: Path) -> None:
    """Make the registry hold exactly the store's images: push the missing, delete what no record names."""
    from sovinfra.mirror import images as site_images

    result = site_images.sync_registry(store_path, registry, _log, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result))
        return
    lines = [f"pushed {r}" for r in result["pushed"]] + [f"removed {r}" for r in result["removed"]]
    click.echo("\n".join(lines) or "up to date")
