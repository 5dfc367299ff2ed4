"""gpgv with apt's rule, for aptly: a Release file is trusted when at least one signature by a pinned
key is good and none is bad.

Debian signs each Release with several keys (this release's, the next release's, the stable release
key). Plain gpgv exits 2 when any signer's key is absent from the keyring, so a keyring that pins only
the keys a site trusts would be refused although apt accepts it. aptly runs `gpgv --status-fd 3 ...`;
this runs the real gpgv with the same arguments, judges its status lines, and hands them on to fd 3.
"""

from __future__ import annotations

import os
import subprocess
import sys

REAL_GPGV = "/usr/bin/gpgv"
BAD = ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG")


def trusted(status: str) -> bool:
    """apt's acceptance: some VALIDSIG, no bad/expired/revoked signature (a missing key is not bad)."""
    words = [
        line.split()[1]
        for line in status.splitlines()
        if line.startswith("[GNUPG:] ") and len(line.split()) > 1
    ]
    return "VALIDSIG" in words and not any(w in BAD for w in words)


def main(argv: list[str]) -> int:
    if "--status-fd" not in argv:
        return subprocess.run([REAL_GPGV, *argv], check=False).returncode
    at = argv.index("--status-fd")
    out_fd = int(argv[at + 1])
    read_end, write_end = os.pipe()
    args = [*argv[:at], "--status-fd", str(write_end), *argv[at + 2 :]]
    proc = subprocess.Popen([REAL_GPGV, *args], pass_fds=(write_end,))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        status = fh.read()
    rc = proc.wait()
    os.write(out_fd, status)
    if rc == 0:
        return 0
    return 0 if trusted(status.decode(errors="replace")) else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
