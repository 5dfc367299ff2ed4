#!/usr/bin/python
# Take one server (an inventory host) out of HAProxy's load balancing or put it back, in every backend
# that holds it, through HAProxy's runtime API (the admin socket). Self-contained: it runs on the gateway.
from __future__ import annotations

DOCUMENTATION = r"""
module: sovinfra_haproxy_server
short_description: Drain a server out of HAProxy, or return it, in every backend that holds it
description:
  - C(drained) stops new requests to the server (HAProxy's drain), waits for its running requests to
    finish, then puts it in maintenance (no requests, no health checks) so it stays out until returned.
  - C(ready) takes it out of maintenance and waits until its health check passes (the server is UP).
  - C(read) changes nothing and reports the server's state in each backend; C(saved) only writes
    O(state_file) (before HAProxy reloads).
  - After a change the servers' state is saved to O(state_file), which HAProxy loads when it (re)starts,
    so a reload never returns a drained server.
options:
  server: {description: HAProxy server name (the inventory host; all but C(saved) need it), type: str}
  state:
    description: What the server should be
    choices: [drained, ready, read, saved]
    default: read
    type: str
  socket: {description: HAProxy's admin socket, default: /run/haproxy/admin.sock, type: path}
  state_file: {description: Where HAProxy's server-state-file is (empty, none), default: "", type: path}
  drain_timeout: {description: Seconds running requests get to finish, default: 300, type: int}
  up_timeout: {description: Seconds a returned server gets to pass its health check, default: 60, type: int}
  absent_ok:
    description: HAProxy not running (no socket, nobody listening) is nothing to change, not a failure
    default: false
    type: bool
"""

import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

# srv_admin_state bits (HAProxy's enum srv_admin): forced, inherited, config, resolution and
# health-check-driven maintenance; forced and inherited drain.
MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
DRAIN = 0x08 | 0x10
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
RUNNING = 2
# srv_check_result of the last health check (HAProxy keeps checking a server in maintenance).
CHECK_FAILED = 2


def table(text, header_prefix="# "):
    """HAProxy's answer with a '# name name ...' header (servers state) -> rows as dicts."""
    header, rows = None, []
    for line in text.splitlines():
        if line.startswith(header_prefix) and header is None:
            header = line[len(header_prefix) :].replace(",", " ").split()
        elif header and line.strip() and not line.startswith("#"):
            rows.append(dict(zip(header, line.split(), strict=False)))
    return rows


def csv_table(text):
    """`show stat` CSV (header '# pxname,svname,...') -> rows as dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]


def servers(state_text, name):
    """[(backend, admin bits, op state, last check result)] for each backend holding server `name`."""
    return [
        (
            row["be_name"],
            int(row["srv_admin_state"]),
            int(row["srv_op_state"]),
            int(row.get("srv_check_result") or 0),
        )
        for row in table(state_text)
        if row.get("srv_name") == name
    ]


def serving(admin, op, check):
    """Takes requests: neither in maintenance nor draining, UP, and its last health check did not fail
    (leaving maintenance makes a server UP at once; a failed check would only take it down `fall` checks
    later)."""
    return not admin & (MAINT | DRAIN) and op == RUNNING and check != CHECK_FAILED


def sessions(stat_text, name):
    """{backend: requests running on server `name`} from `show stat`."""
    return {
        row["pxname"]: int(row.get("scur") or 0) for row in csv_table(stat_text) if row.get("svname") == name
    }


def label(admin, op):
    if admin & MAINT:
        return "maint"
    if admin & DRAIN:
        return "drain"
    return "up" if op == RUNNING else "down"


class Runtime:
    def __init__(self, path):
        self.path = path

    def ask(self, command):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        try:
            conn.connect(self.path)
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            conn.close()
        return b"".join(chunks).decode()

    def set_state(self, backend, name, state):
        answer = self.ask(f"set server {backend}/{name} state {state}").strip()
        if answer:  # HAProxy answers nothing on success
            raise RuntimeError(f"set server {backend}/{name} state {state}: {answer}")


def wait(check, timeout, interval=0.5):
    """Poll check() (a reason to keep waiting, or None) until None or the time is up; the last reason."""
    deadline = time.monotonic() + timeout
    while True:
        reason = check()
        if reason is None or time.monotonic() >= deadline:
            return reason
        time.sleep(interval)


def save(runtime, path):
    if path:
        text = runtime.ask("show servers state")
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(path + ".tmp", path)


def main():
    module = AnsibleModule(
        argument_spec={
            "server": {"type": "str"},
            "state": {"type": "str", "default": "read", "choices": ["drained", "ready", "read", "saved"]},
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "state_file": {"type": "path", "default": ""},
            "drain_timeout": {"type": "int", "default": 300},
            "up_timeout": {"type": "int", "default": 60},
            "absent_ok": {"type": "bool", "default": False},
        },
        required_if=[("state", s, ["server"]) for s in ("drained", "ready", "read")],
        supports_check_mode=True,
    )
    p = module.params
    runtime = Runtime(p["socket"])
    name = p["server"]
    if p["state"] == "saved":
        if not module.check_mode:
            try:
                save(runtime, p["state_file"])
            except OSError as exc:
                # HAProxy not running yet (its first start): nothing to keep.
                module.exit_json(changed=False, msg=f"{p['socket']}: nothing saved: {exc}")
        module.exit_json(changed=False)
    try:
        found = servers(runtime.ask("show servers state"), name)
    except OSError as exc:
        absent = isinstance(exc, (FileNotFoundError, ConnectionRefusedError))
        if module.check_mode or (absent and p["absent_ok"]):  # a gateway not converged yet: nothing there
            module.exit_json(changed=False, backends={}, msg=f"{p['socket']}: HAProxy not answering: {exc}")
        module.fail_json(msg=f"{p['socket']}: cannot talk to HAProxy: {exc}")
    before = {be: label(admin, op) for be, admin, op, _ in found}
    if p["state"] == "read" or not found:
        module.exit_json(changed=False, backends=before, drained=any(s == "maint" for s in before.values()))
    if p["state"] == "drained":
        todo = [be for be, admin, _, _ in found if not admin & MAINT]
    else:
        todo = [be for be, admin, op, check in found if not serving(admin, op, check)]
    if not todo or module.check_mode:
        module.exit_json(changed=bool(todo), backends=before, drained=p["state"] != "ready")
    started = time.monotonic()
    try:
        if p["state"] == "drained":
            for be in todo:
                runtime.set_state(be, name, "drain")

            def running():
                left = {be: n for be, n in sessions(runtime.ask("show stat -1 4 -1"), name).items() if n}
                return ", ".join(f"{n} in {be}" for be, n in sorted(left.items())) or None

            left = wait(running, p["drain_timeout"])
            if left:
                save(runtime, p["state_file"])
                module.fail_json(
                    msg=f"{name}: requests still running after {p['drain_timeout']} s of drain ({left}); "
                    "it takes no new requests and stays in drain",
                    backends={be: "drain" for be in todo},
                )
            for be in todo:
                runtime.set_state(be, name, "maint")
        else:
            # Out of maintenance through drain, marked down: HAProxy health-checks it (no requests yet) and
            # it is UP only after `rise` fresh checks pass; only then does it take requests again.
            for be, admin, _, _ in found:
                if be in todo and admin & MAINT:
                    runtime.set_state(be, name, "drain")
                    runtime.ask(f"set server {be}/{name} health down")

            def down():
                now = servers(runtime.ask("show servers state"), name)
                late = [be for be, _, op, chk in now if be in todo and (op != RUNNING or chk == CHECK_FAILED)]
                return ", ".join(late) or None

            late = wait(down, p["up_timeout"])
            if late:
                save(runtime, p["state_file"])
                module.fail_json(
                    msg=f"{name}: its health check has not passed after {p['up_timeout']} s "
                    f"(backends: {late}); it stays out of the site endpoint (drain)",
                )
            for be in todo:
                runtime.set_state(be, name, "ready")
        save(runtime, p["state_file"])
    except (OSError, RuntimeError) as exc:
        module.fail_json(msg=f"{p['socket']}: {exc}")
    after = {be: label(admin, op) for be, admin, op, _ in servers(runtime.ask("show servers state"), name)}
    module.exit_json(
        changed=True,
        backends=after,
        before=before,
        seconds=round(time.monotonic() - started, 1),
        drained=p["state"] == "drained",
    )


if __name__ == "__main__":
    main()
