"""The lab's stand-in NVIDIA repositories: real package names, versions and dependency shape, signed.

NVIDIA's repositories cannot be reached from the lab and a container cannot load a kernel module, so the
lab builds apt repositories of stand-ins, laid out like NVIDIA's flat repositories (CUDA's
`repos/debian12/x86_64/` and the container toolkit's `stable/deb/amd64/`), signed by a lab key, and the
mirror host publishes them as a site publishes NVIDIA's. The roles' repository, pin, install and hold
logic runs on them unchanged. What the stand-ins do instead of the real thing:
  - libnvidia-ml1 installs the NVML simulator as libnvidia-ml.so.1 (reads /etc/sovinfra/nvml-profile.yml);
  - nvidia-smi, nvidia-ctk read GPUs through that NVML; nvidia-ctk edits runtime configs as 1.18 does;
  - nvidia-container-runtime applies the CDI spec nvidia-ctk wrote (its CDI mode) and runs runc; with no
    /dev/nvidia* in a container host, the spec's "device" is the GPU profile the NVML simulator reads;
  - the kernel module packages carry no module (nothing to build or load in a container);
  - DCGM's dcgmi judges each GPU from that NVML (diag levels 1-3, DCGM 4's JSON shape) and, as the real
    one, needs its host engine (the nvidia-dcgm service's nv-hostengine) listening on 127.0.0.1:5555;
  - nvbandwidth and nccl-tests' all_reduce_perf (NVIDIA publishes sources, a site packages them) report
    each GPU's bandwidth from the PCIe link and NVLinks that NVML reports, in the real tools' formats;
  - linux-headers-<lab host kernel>: containers run the lab host's kernel, whose headers no archive has.
Package names follow NVIDIA's Debian 12 CUDA repository (see the stack issue's note for sources).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from pathlib import Path

from sovinfra.errors import UserError
from sovinfra.lab import config
from sovinfra.mirror import sitekey

STANDIN_DIR = Path(__file__).parent / "nvidia_standin"
DRIVER_VERSIONS = ("570.124.06", "570.133.20")  # one branch: the upgrade path
DRIVER_BRANCH = "570"
CUDA_VERSIONS = ("12.8.1", "12.4.1")
CONTAINER_TOOLKIT_VERSION = "1.18.0"
# DCGM 4 as NVIDIA's CUDA repository versions it: epoch 1 (pins read `1:4.2.3-1`).
DCGM_VERSION = "4.2.3"
# NVIDIA's bandwidth tests as a site builds them into its repository (package name: upstream version).
BANDWIDTH_TOOLS = {"nvbandwidth": "0.7", "nccl-tests": "2.13.13"}
REVISION = "1"
# The toolkit stand-in's content changed (its runtime applies CDI specs): a new Debian revision, as a
# distribution would make, so a store that published the old one takes the new one beside it.
CONTAINER_TOOLKIT_REVISION = "2"
# Likewise the driver's: its DKMS packages now carry a module DKMS builds (and depend on dkms).
DRIVER_REVISION = "2"
# NVIDIA's CUDA repository for each Debian release the lab runs (debian12, debian13), the same stand-ins
# in each; the first is Debian 12's.
CUDA_REPOS = tuple(f"cuda/repos/{distro}/x86_64" for distro in config.RELEASES.values())
CUDA_REPO = CUDA_REPOS[0]
CONTAINER_TOOLKIT_REPO = "libnvidia-container/stable/deb/amd64"
KEY_NAME = "sovinfra lab stand-in NVIDIA repositories"
MULTIARCH_LIB = "/usr/lib/x86_64-linux-gnu"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    description: str
    depends: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    files: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # path -> (mode, content)
    ldconfig: bool = False  # ships shared libraries: activate libc's ldconfig trigger
    arch: str = "amd64"
    scripts: dict[str, bytes] = field(default_factory=dict)  # maintainer scripts: postinst, prerm, ...

    def recipe(self) -> dict[str, object]:
        doc = asdict(self)
        doc["files"] = {p: [m, hashlib.sha256(c).hexdigest()] for p, (m, c) in sorted(self.files.items())}
        doc["scripts"] = {n: hashlib.sha256(c).hexdigest() for n, c in sorted(self.scripts.items())}
        return doc


def _standin(name: str, **subst: str) -> bytes:
    text = (STANDIN_DIR / name).read_text()
    for key, value in subst.items():
        text = text.replace(f"@{key}@", value)
    return text.encode()


def _unit(description: str, exec_start: str) -> bytes:
    return (
        f"[Unit]\nDescription={description} (sovinfra lab stand-in)\n\n"
        f"[Service]\nType=simple\nExecStart={exec_start}\n\n[Install]\nWantedBy=multi-user.target\n"
    ).encode()


def driver_package_version(version: str) -> str:
    """The stand-in driver packages' Debian version for a driver version."""
    return f"{version}-{DRIVER_REVISION}"


def driver_packages(version: str, nvml_library: bytes) -> list[Package]:
    v = driver_package_version(version)
    exact = f"(= {v})"
    helper = {"/usr/lib/sovinfra-standin/smi/nvml_ctypes.py": (0o644, _standin("nvml_ctypes.py"))}
    return [
        Package(
            "libnvidia-ml1",
            v,
            "NVIDIA Management Library (stand-in: sovinfra's NVML simulator)",
            depends=("libyaml-0-2",),
            files={
                f"{MULTIARCH_LIB}/libnvidia-ml.so.1": (0o644, nvml_library),
                "/usr/share/sovinfra-standin/driver-version": (0o644, f"{version}\n".encode()),
            },
            ldconfig=True,
        ),
        Package(
            "nvidia-smi",
            v,
            "NVIDIA System Management Interface (stand-in, reads NVML)",
            depends=(f"libnvidia-ml1 {exact}", "python3"),
            files={"/usr/bin/nvidia-smi": (0o755, _standin("nvidia-smi")), **helper},
        ),
        Package(
            "nvidia-persistenced",
            v,
            "NVIDIA persistence daemon (stand-in)",
            files={
                "/usr/bin/nvidia-persistenced": (0o755, _standin("nvidia-persistenced")),
                "/lib/systemd/system/nvidia-persistenced.service": (
                    0o644,
                    _unit("NVIDIA Persistence Daemon", "/usr/bin/nvidia-persistenced --persistence-mode"),
                ),
            },
        ),
        _dkms_package("nvidia-kernel-open-dkms", v, version, "Open", "nvidia-kernel-dkms"),
        _dkms_package("nvidia-kernel-dkms", v, version, "Proprietary", "nvidia-kernel-open-dkms"),
        Package(
            "nvidia-driver",
            v,
            "NVIDIA driver metapackage (stand-in)",
            depends=(
                f"libnvidia-ml1 {exact}",
                f"nvidia-smi {exact}",
                f"nvidia-persistenced {exact}",
                f"nvidia-kernel-open-dkms {exact} | nvidia-kernel-dkms {exact}",
            ),
        ),
        Package(
            "nvidia-open",
            v,
            "NVIDIA driver with open kernel modules (stand-in)",
            depends=(f"nvidia-driver {exact}", f"nvidia-kernel-open-dkms {exact}"),
        ),
        Package(
            "cuda-drivers",
            v,
            "NVIDIA driver with proprietary kernel modules (stand-in)",
            depends=(f"nvidia-driver {exact}", f"nvidia-kernel-dkms {exact}"),
        ),
        Package(
            f"nvidia-fabricmanager-{DRIVER_BRANCH}",
            v,
            "NVIDIA Fabric Manager for NVSwitch systems (stand-in)",
            files={
                "/usr/bin/nv-fabricmanager": (0o755, _standin("nv-fabricmanager")),
                "/usr/share/nvidia/nvswitch/fabricmanager.cfg": (
                    0o644,
                    b"LOG_LEVEL=4\nFM_STAY_RESIDENT_ON_FAILURES=0\n",
                ),
                "/lib/systemd/system/nvidia-fabricmanager.service": (
                    0o644,
                    _unit(
                        "NVIDIA fabric manager service",
                        "/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg",
                    ),
                ),
            },
        ),
    ]


def _dkms_package(name: str, v: str, version: str, flavour: str, other: str) -> Package:
    """NVIDIA's kernel modules as DKMS source, as their packages ship them: a real (tiny, hardware-free)
    module that DKMS builds for the running kernel at install, where that kernel's headers are (a VM's;
    a container's kernel is this machine's, which no package builds for)."""
    src = f"/usr/src/nvidia-{version}"
    return Package(
        name,
        v,
        f"NVIDIA {flavour.lower()} GPU kernel modules, DKMS (stand-in: a module without hardware)",
        depends=("dkms",),
        conflicts=(other,),
        files={
            f"{src}/dkms.conf": (0o644, _dkms_conf(version, flavour)),
            f"{src}/Makefile": (0o644, (STANDIN_DIR / "kernel" / "Makefile").read_bytes()),
            f"{src}/nvidia.c": (0o644, (STANDIN_DIR / "kernel" / "nvidia.c").read_bytes()),
            # What udev does for a GPU's PCI id (a VM has no GPU): load the module at boot.
            "/usr/lib/modules-load.d/nvidia-standin.conf": (0o644, b"nvidia\n"),
        },
        scripts={"postinst": _dkms_postinst(version), "prerm": _dkms_prerm(version)},
    )


def _dkms_conf(version: str, flavour: str) -> bytes:
    build = "${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"
    text = (
        f'PACKAGE_NAME="nvidia"\nPACKAGE_VERSION="{version}"\nBUILT_MODULE_NAME[0]="nvidia"\n'
        'DEST_MODULE_LOCATION[0]="/updates/dkms"\nAUTOINSTALL="yes"\n'
        f'MAKE[0]="make -C ${{kernel_source_dir}} M={build} STANDIN_VERSION={version} '
        f'STANDIN_FLAVOUR={flavour} modules"\n'
        f'CLEAN="make -C ${{kernel_source_dir}} M={build} clean"\n'
    )
    return text.encode()


def _dkms_postinst(version: str) -> bytes:
    # As Debian's DKMS packages do: register the source, then build and install for the running kernel
    # when its headers are there.
    return f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
  dkms status -m nvidia -v {version} | grep -q . || dkms add -m nvidia -v {version}
  kernel=$(uname -r)
  if [ -e "/lib/modules/$kernel/build" ]; then
    dkms install -m nvidia -v {version} -k "$kernel"
  else
    echo "nvidia {version}: no headers for kernel $kernel: module not built" >&2
  fi
fi
""".encode()


def _dkms_prerm(version: str) -> bytes:
    return f"""#!/bin/sh
set -e
case "$1" in
  remove|upgrade|deconfigure) dkms remove -m nvidia -v {version} --all >/dev/null 2>&1 || true ;;
esac
""".encode()


def cuda_packages(version: str) -> list[Package]:
    major, minor, _patch = version.split(".")
    dash, dot, v = f"{major}-{minor}", f"{major}.{minor}", f"{version}-{REVISION}"
    prefix = f"/usr/local/cuda-{dot}"
    nvcc = f"#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver (sovinfra stand-in)'\necho 'Cuda compilation tools, release {dot}, V{version}'\n"  # noqa: E501
    return [
        Package(
            f"cuda-nvcc-{dash}",
            v,
            f"CUDA nvcc {dot} (stand-in)",
            files={f"{prefix}/bin/nvcc": (0o755, nvcc.encode())},
        ),
        Package(
            f"cuda-cudart-{dash}",
            v,
            f"CUDA runtime {dot} (stand-in: no library)",
            files={f"{prefix}/version.json": (0o644, json.dumps({"cuda": {"version": version}}).encode())},
        ),
        Package(
            f"cuda-toolkit-{dash}",
            v,
            f"CUDA Toolkit {dot} metapackage (stand-in)",
            depends=(f"cuda-nvcc-{dash} (= {v})", f"cuda-cudart-{dash} (= {v})"),
        ),
    ]


def headers_package(kernel_release: str) -> Package:
    return Package(
        f"linux-headers-{kernel_release}",
        f"{kernel_release}-{REVISION}",
        "Header files for the lab host's kernel (stand-in: containers run this kernel)",
        files={f"/usr/src/linux-headers-{kernel_release}/.sovinfra-standin": (0o644, b"")},
    )


def container_toolkit_packages(version: str) -> list[Package]:
    v = f"{version}-{CONTAINER_TOOLKIT_REVISION}"
    return [
        Package("libnvidia-container1", v, "NVIDIA container runtime library (stand-in)"),
        Package(
            "libnvidia-container-tools",
            v,
            "NVIDIA container runtime library tools (stand-in)",
            depends=(f"libnvidia-container1 (= {v})",),
        ),
        Package(
            "nvidia-container-toolkit-base",
            v,
            "NVIDIA Container Toolkit base: nvidia-ctk, nvidia-container-runtime (stand-in)",
            depends=("python3", "python3-yaml"),
            files={
                "/usr/bin/nvidia-ctk": (0o755, _standin("nvidia-ctk", VERSION=version)),
                "/usr/lib/sovinfra-standin/ctk/nvml_ctypes.py": (0o644, _standin("nvml_ctypes.py")),
                "/usr/bin/nvidia-container-runtime": (
                    0o755,
                    _standin("nvidia-container-runtime", VERSION=version),
                ),
            },
        ),
        Package(
            "nvidia-container-toolkit",
            v,
            "NVIDIA Container Toolkit (stand-in)",
            depends=(f"nvidia-container-toolkit-base (= {v})", f"libnvidia-container-tools (= {v})"),
        ),
    ]


def dcgm_packages(version: str) -> list[Package]:
    """DCGM 4: the core (dcgmi, nv-hostengine, the nvidia-dcgm service) and one package per CUDA major."""
    v = f"1:{version}-{REVISION}"
    helpers = "/usr/lib/sovinfra-standin/dcgm"
    core = Package(
        "datacenter-gpu-manager-4-core",
        v,
        "NVIDIA Data Center GPU Manager 4: dcgmi, nv-hostengine (stand-in: judges the NVML simulator)",
        depends=("python3",),
        files={
            "/usr/bin/dcgmi": (0o755, _standin("dcgmi", VERSION=version)),
            "/usr/bin/nv-hostengine": (0o755, _standin("nv-hostengine")),
            f"{helpers}/nvml_ctypes.py": (0o644, _standin("nvml_ctypes.py")),
            f"{helpers}/dcgm_nvml.py": (0o644, _standin("dcgm_nvml.py")),
            "/lib/systemd/system/nvidia-dcgm.service": (
                0o644,
                _unit("NVIDIA DCGM service", "/usr/bin/nv-hostengine -n"),
            ),
        },
    )
    flavours = [
        Package(f"datacenter-gpu-manager-4-cuda{major}", v, f"DCGM 4 for CUDA {major} (stand-in)",
                depends=(f"datacenter-gpu-manager-4-core (= {v})",))
        for major in ("12", "13")
    ]  # fmt: skip
    return [core, *flavours]


def bandwidth_packages() -> list[Package]:
    """NVIDIA's bandwidth tests as a site packages them from NVIDIA's sources (NVIDIA publishes no package):
    nvbandwidth, and nccl-tests' all_reduce_perf; both measure the links the NVML simulator reports."""
    out = []
    for name, tool in (("nvbandwidth", "nvbandwidth"), ("nccl-tests", "all_reduce_perf")):
        version, helpers = BANDWIDTH_TOOLS[name], f"/usr/lib/sovinfra-standin/{name}"
        files = {
            f"/usr/bin/{tool}": (0o755, _standin(tool, VERSION=version, HELPERS=helpers)),
            f"{helpers}/nvml_ctypes.py": (0o644, _standin("nvml_ctypes.py")),
            f"{helpers}/gpu_links.py": (0o644, _standin("gpu_links.py")),
        }
        description = f"{name} (stand-in: measures the links the NVML simulator reports)"
        out.append(Package(name, f"{version}-{REVISION}", description, depends=("python3",), files=files))
    return out


def cuda_repo_packages(nvml_library: bytes, kernel_release: str) -> list[Package]:
    packages = [p for v in DRIVER_VERSIONS for p in driver_packages(v, nvml_library)]
    packages += [p for v in CUDA_VERSIONS for p in cuda_packages(v)]
    return [*packages, *dcgm_packages(DCGM_VERSION), *bandwidth_packages(), headers_package(kernel_release)]


# ---- building (I/O) ----


def _control(pkg: Package, installed_kb: int) -> str:
    lines = [
        f"Package: {pkg.name}",
        f"Version: {pkg.version}",
        f"Architecture: {pkg.arch}",
        "Maintainer: sovinfra lab <lab@sovinfra.invalid>",
        f"Installed-Size: {installed_kb}",
        "Section: non-free/libs",
        "Priority: optional",
    ]
    if pkg.depends:
        lines.append("Depends: " + ", ".join(pkg.depends))
    if pkg.conflicts:
        lines.append("Conflicts: " + ", ".join(pkg.conflicts))
    if pkg.provides:
        lines.append("Provides: " + ", ".join(pkg.provides))
    lines.append(f"Description: {pkg.description}")
    return "\n".join(lines) + "\n"


def build_deb(pkg: Package, out_dir: Path, epoch: int) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        size = 0
        for path, (mode, content) in sorted(pkg.files.items()):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
            size += len(content)
        (root / "DEBIAN" / "control").write_text(_control(pkg, max(1, size // 1024)))
        if pkg.ldconfig:
            (root / "DEBIAN" / "triggers").write_text("activate-noawait ldconfig\n")
        for name, script in pkg.scripts.items():
            (root / "DEBIAN" / name).write_bytes(script)
            (root / "DEBIAN" / name).chmod(0o755)
        for p in root.rglob("*"):
            os.utime(p, (epoch, epoch), follow_symlinks=False)
        # Debian's file name leaves the epoch out.
        deb = out_dir / f"{pkg.name}_{pkg.version.partition(':')[2] or pkg.version}_{pkg.arch}.deb"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
            env=env,
        )
    return deb


def _gpg(home: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), *args], check=True, capture_output=True, text=True, **kw
    )  # type: ignore[call-overload]


def signing_key(home: Path) -> str:
    """The lab's repository key (made once, kept with the lab's caches); returns its fingerprint."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout
    if "fpr:" not in listing:
        _gpg(home, "--passphrase", "", "--quick-gen-key", KEY_NAME, "ed25519", "sign", "never")
        listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def index_repo(repo: Path, home: Path, fingerprint: str, label: str) -> None:
    """Packages(.gz), Release with hashes, InRelease and Release.gpg: what apt verifies."""
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (repo / "Packages").write_text(packages)
    with gzip.GzipFile(repo / "Packages.gz", "wb", mtime=0) as gz:
        gz.write(packages.encode())
    lines = [
        f"Origin: {label}",
        f"Label: {label}",
        "Architectures: amd64 all",
        f"Date: {formatdate(usegmt=True)}",
    ]
    for field_name, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{field_name}:")
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data):>8} {name}")
    (repo / "Release").write_text("\n".join(lines) + "\n")
    for out in ("InRelease", "Release.gpg"):
        (repo / out).unlink(missing_ok=True)
    _gpg(
        home, "--local-user", fingerprint, "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release")
    )
    _gpg(
        home,
        "--local-user",
        fingerprint,
        "--armor",
        "--detach-sign",
        "-o",
        str(repo / "Release.gpg"),
        str(repo / "Release"),
    )
    key = _gpg(home, "--armor", "--export", fingerprint).stdout
    (repo / key_file_name(fingerprint)).write_text(key)


def key_file_name(fingerprint: str) -> str:
    """The key published inside the repository, named by its short id as NVIDIA's 3bf863cc.pub is."""
    return f"{fingerprint[-8:].lower()}.pub"


@dataclass(frozen=True)
class StandinRepos:
    root: Path  # holds CUDA_REPOS and CONTAINER_TOOLKIT_REPO
    fingerprint: str

    @property
    def key_file(self) -> str:
        return key_file_name(self.fingerprint)


def ensure(cache_dir: Path, nvml_library: Path, kernel_release: str) -> StandinRepos:
    """Build the stand-in repositories unless the same recipe was built before."""
    for tool in ("dpkg-deb", "dpkg-scanpackages", "gpg"):
        if not shutil.which(tool):
            raise UserError(f"{tool} is not installed (run scripts/setup): the lab builds NVIDIA stand-ins")
    home = cache_dir / "gnupg"
    try:
        return _build(cache_dir, home, nvml_library, kernel_release)
    finally:
        sitekey.stop_agent(home)  # signing started a gpg-agent for this home: it does not outlive the build


def _build(cache_dir: Path, home: Path, nvml_library: Path, kernel_release: str) -> StandinRepos:
    fingerprint = signing_key(home)
    cuda = cuda_repo_packages(nvml_library.read_bytes(), kernel_release)
    toolkit = container_toolkit_packages(CONTAINER_TOOLKIT_VERSION)
    recipe = json.dumps(
        [fingerprint, CUDA_REPOS, [p.recipe() for p in cuda], [p.recipe() for p in toolkit]], sort_keys=True
    )
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    root = cache_dir / "repos" / digest
    if all((root / sub / "InRelease").exists() for sub in (*CUDA_REPOS, CONTAINER_TOOLKIT_REPO)):
        return StandinRepos(root, fingerprint)
    staging = cache_dir / "repos" / f".{digest}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    repos = (
        (CUDA_REPO, cuda, "NVIDIA CUDA (sovinfra lab stand-in)"),
        (CONTAINER_TOOLKIT_REPO, toolkit, "NVIDIA container toolkit (sovinfra lab stand-in)"),
    )
    for sub, packages, label in repos:
        repo = staging / sub
        repo.mkdir(parents=True)
        for pkg in packages:
            build_deb(pkg, repo, epoch=1_700_000_000)
        index_repo(repo, home, fingerprint, label)
    for sub in CUDA_REPOS[1:]:
        # The other releases' trees: the same packages (byte for byte), indexed and signed for themselves.
        repo = staging / sub
        repo.mkdir(parents=True)
        for deb in (staging / CUDA_REPO).glob("*.deb"):
            os.link(deb, repo / deb.name)
        index_repo(repo, home, fingerprint, "NVIDIA CUDA (sovinfra lab stand-in)")
    for old in (cache_dir / "repos").glob("[0-9a-f]*"):
        shutil.rmtree(old, ignore_errors=True)  # one recipe at a time: the cache does not grow
    staging.rename(root)
    os.chmod(root.parent, 0o755)
    return StandinRepos(root, fingerprint)
