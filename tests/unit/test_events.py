"""The callback's JSON-lines events, recorded from real ansible-playbook runs on the lab."""

from __future__ import annotations

from sovinfra.ansible import events, runner
from tests.conftest import FIXTURES


def lines(name: str) -> list[str]:
    return (FIXTURES / f"ansible_events_{name}.jsonl").read_text().splitlines()


def test_converged_run_recap() -> None:
    recap = events.recap_from_lines(lines("converged"))
    assert recap.complete
    assert set(recap.hosts) == {"gpu1", "gpu2", "mirror1"}
    assert all(r.changed == 0 and r.failed == 0 and r.unreachable == 0 for r in recap.hosts.values())
    assert recap.hosts["gpu1"].ok > 10
    assert not recap.failed_hosts
    # The kernel-headers warning in a container, from both GPU nodes and not the mirror.
    assert sorted(w["host"] for w in recap.warnings) == ["gpu1", "gpu2"]


def test_failed_run_names_hosts_tasks_and_messages() -> None:
    recap = events.recap_from_lines(lines("preflight_failed"))
    assert recap.failed_hosts == ["gpu1", "gpu2", "mirror1"]
    assert {f["task"] for f in recap.failures} == {"preflight : Free disk space on /"}
    assert all("preflight_min_free_gib" in f["msg"] for f in recap.failures)


def test_garbage_lines_are_ignored() -> None:
    for line in ["", "PLAY [x] ****", "{not json", "[1, 2]", '{"no_event": 1}', '{"event": 5}']:
        assert events.parse_line(line) is None
    recap = events.recap_from_lines(
        ["junk", '{"event": "host_result", "status": "unreachable", "host": "h"}']
    )
    assert recap.failed_hosts == []  # counted only once stats arrive...
    assert recap.failures == [{"host": "h", "task": "", "msg": ""}]
    assert not recap.complete  # ...and a run without stats is never reported ok


def test_run_without_stats_is_not_ok() -> None:
    result = runner.RunResult(0, events.recap_from_lines(lines("converged")[:-1]), "")
    assert not result.ok
    assert runner.RunResult(0, events.recap_from_lines(lines("converged")), "").ok


def test_unreachable_in_stats_fails_the_host() -> None:
    recap = events.recap_from_lines(
        ['{"event": "stats", "hosts": {"a": {"ok": 1}, "b": {"unreachable": 1}, "c": {"failures": 2}}}']
    )
    assert recap.failed_hosts == ["b", "c"]


def test_forks_sized_to_inventory() -> None:
    assert runner.forks_for(1) == 5
    assert runner.forks_for(40) == 40
    assert runner.forks_for(1000) == runner.MAX_FORKS


def test_command_line() -> None:
    run = runner.PlaybookRun(FIXTURES / "x.yml", FIXTURES, limit="gpu1", tags="base", check=True, diff=True)
    cmd = runner.command(run)
    assert cmd[:2] == ["ansible-playbook", "-i"]
    assert cmd[-6:] == ["--limit", "gpu1", "--tags", "base", "--check", "--diff"]


def test_notices_are_warnings_reboots_and_actions_from_debug_messages() -> None:
    def debug(host: str, msg: str, action: str = "ansible.builtin.debug") -> dict[str, object]:
        return {
            "event": "host_result",
            "status": "ok",
            "host": host,
            "task": "t",
            "msg": msg,
            "action": action,
        }

    recap = events.Recap()
    for event in (
        debug("gpu1", "reboot required: the loaded NVIDIA module is 570.1, the installed one 580.2"),
        debug("gpu2", "Warning: no CDI spec yet"),
        debug("gpu2", "action needed: enrol the MOK key at the console"),
        debug("gpu2", "all fine"),
        debug("gpu1", "reboot required: said by a command, not the role", action="ansible.builtin.command"),
    ):
        events.apply_event(recap, event)
    assert [(n["host"], n["kind"]) for n in recap.notices] == [
        ("gpu1", "reboot required"),
        ("gpu2", "warning"),
        ("gpu2", "action needed"),
    ]
    assert [w["host"] for w in recap.warnings] == ["gpu2"]
    assert recap.as_dict()["notices"] == recap.notices
