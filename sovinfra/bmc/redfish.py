"""Redfish calls to a server's BMC through sushy (OpenStack's Redfish client): log in, read the system,
power it, set its next boot. Each failure becomes one line a person can act on (BmcError)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sovinfra.bmc.targets import BmcTarget

POWER_ACTIONS = ("on", "off", "cycle")
BOOT_DEVICES = {"pxe": "Pxe", "disk": "Hdd"}
_MODES = {"uefi": "UEFI", "bios": "Legacy"}


class BmcError(Exception):
    """A BMC refused, could not be reached, or did not do what it was asked (one line)."""


@dataclass
class Session:
    target: BmcTarget
    system: Any  # sushy's System


def _reason(exc: Exception) -> str:
    """What went wrong, in words, for the errors sushy and requests raise."""
    import sushy.exceptions as sx

    text = str(exc)
    if isinstance(exc, sx.AccessError):
        return "the BMC refused the login (wrong bmc_user or bmc_password?)"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "its TLS certificate is not trusted (set bmc_ca_file to the CA that signed it)"
    if "hostname mismatch" in text or "doesn't match" in text:
        return "its TLS certificate names another host"
    if isinstance(exc, sx.ConnectionError):
        return "cannot connect (address, port, or the BMC's network)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


def connect(target: BmcTarget) -> Session:
    """Log in and find the host's system; BmcError naming the host and BMC when that fails."""
    import sushy
    from sushy import auth

    logging.getLogger("sushy").setLevel(logging.CRITICAL)  # its warnings repeat what BmcError says
    try:
        root = sushy.Sushy(
            f"{target.url}/redfish/v1",
            auth=auth.SessionOrBasicAuth(username=target.user, password=target.password),
            verify=target.ca_file or True,
            read_timeout=target.timeout_s,
            connect_timeout=target.timeout_s,
            server_side_retries=1,
            server_side_retries_delay=1,
        )
        members = [m.rstrip("/") for m in root.get_system_collection().members_identities]
        if target.system_id:
            wanted = [m for m in members if m.rsplit("/", 1)[-1] == target.system_id]
            if not wanted:
                listed = ", ".join(m.rsplit("/", 1)[-1] for m in members) or "none"
                raise BmcError(
                    f"{target.host}: BMC {target.url} has no system {target.system_id!r} (it lists {listed})"
                )
        elif not members:
            raise BmcError(f"{target.host}: BMC {target.url} lists no system this account may manage")
        elif len(members) > 1:
            listed = ", ".join(m.rsplit("/", 1)[-1] for m in members)
            raise BmcError(
                f"{target.host}: BMC {target.url} lists {len(members)} systems ({listed}): set bmc_system_id"
            )
        else:
            wanted = members
        return Session(target, root.get_system(wanted[0]))
    except BmcError:
        raise
    except Exception as exc:  # sushy and requests raise many kinds; each is one line for the person
        raise BmcError(f"{target.host}: BMC {target.url}: {_reason(exc)}") from exc


def _value(field: Any) -> str:
    return str(getattr(field, "value", field) or "")


def status(session: Session) -> dict[str, str]:
    """Power state, next boot and identity as the BMC reports them."""
    try:
        session.system.refresh(force=True)
        s = session.system
        boot = s.boot
        return {
            "power": _value(s.power_state),
            "boot_target": _value(boot.target),
            "boot_enabled": _value(boot.enabled),
            "boot_mode": _value(boot.mode),
            "system": str(s.identity or ""),
            "uuid": str(s.uuid or ""),
            "model": str(s.model or ""),
            "serial": str(s.serial_number or ""),
        }
    except Exception as exc:
        raise BmcError(f"{session.target.host}: BMC {session.target.url}: {_reason(exc)}") from exc


def power(session: Session, action: str) -> str:
    """Power the system on, off (at once, as a held button) or through a cycle; what was done."""
    import sushy

    host = session.target.host
    try:
        session.system.refresh(force=True)
        state = _value(session.system.power_state)
        allowed = {_value(v) for v in session.system.get_allowed_reset_system_values()}
        if action == "on":
            if state == "On":
                return "already on"
            reset = sushy.ResetType.ON
        elif action == "off":
            if state == "Off":
                return "already off"
            reset = sushy.ResetType.FORCE_OFF
        elif state == "Off":
            reset = sushy.ResetType.ON
        else:
            cycle = sushy.ResetType.POWER_CYCLE
            reset = cycle if cycle.value in allowed else sushy.ResetType.FORCE_RESTART
        if reset.value not in allowed:
            raise BmcError(f"{host}: BMC {session.target.url} does not offer {reset.value}")
        session.system.reset_system(reset)
        return reset.value
    except BmcError:
        raise
    except Exception as exc:
        raise BmcError(f"{host}: BMC {session.target.url}: {_reason(exc)}") from exc


def boot_once(session: Session, device: str) -> dict[str, str]:
    """Boot from `device` (pxe or disk) at the next start only, in the host's firmware mode when the
    inventory names one (asked for only when the BMC reports another: a mode change is a firmware
    change); read back, since a BMC may accept a setting it does not keep."""
    import sushy

    target = session.target
    wanted = _MODES.get(target.firmware)
    mode = wanted if wanted and status(session)["boot_mode"] != wanted else None
    try:
        session.system.set_system_boot_options(
            target=sushy.BootSource(BOOT_DEVICES[device]),
            enabled=sushy.BootSourceOverrideEnabled.ONCE,
            mode=sushy.BootSourceOverrideMode(mode) if mode else None,
        )
    except Exception as exc:
        raise BmcError(f"{target.host}: BMC {target.url}: {_reason(exc)}") from exc
    now = status(session)
    if now["boot_target"] != BOOT_DEVICES[device]:
        raise BmcError(
            f"{target.host}: BMC {target.url} accepted boot from {BOOT_DEVICES[device]} "
            f"but reports {now['boot_target'] or 'nothing'}"
        )
    return now
