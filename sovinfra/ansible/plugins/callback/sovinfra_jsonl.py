# One JSON object per line on stdout for every playbook event; `sovinfra apply` reads them.
# Loaded by ansible-playbook (not imported by sovinfra), so it depends on nothing but Ansible.
from __future__ import annotations

import json
import sys
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: sovinfra_jsonl
    type: stdout
    short_description: JSON-lines events for sovinfra
    description: Writes one JSON object per line for each play, task, host result and the final stats.
"""

_MAX_MSG = 2000


def _message(result, status):
    res = result._result
    if res.get("_ansible_no_log"):
        return "(output hidden: no_log)"
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    # A loop's summary ("One or more items failed") hides the item that failed: show it.
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed") and not item.get("_ansible_no_log"):
            detail = item.get("stderr") or item.get("msg") or ""
            # The loop's label when it has one: items can carry secrets (API keys) the label leaves out.
            label = item.get("_ansible_item_label", item.get("item"))
            msg = f"{msg}: {label}: {detail}" if detail else msg
            break
    # A loop that changed some items and failed none (what a check run would remove, say): name them.
    changed = [
        str(item.get("_ansible_item_label", item.get("item")))
        for item in res.get("results") or []
        if isinstance(item, dict) and item.get("changed") and not item.get("_ansible_no_log")
    ]
    if status == "changed" and changed:
        msg = "changed: " + ", ".join(changed)
    if not isinstance(msg, str):
        msg = json.dumps(msg, default=str)
    return msg[:_MAX_MSG]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "sovinfra_jsonl"

    def _emit(self, event, **data):
        data["event"] = event
        data["t"] = round(time.time(), 3)
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        sys.stdout.flush()

    def v2_playbook_on_start(self, playbook):
        self._emit("playbook_start", playbook=playbook._file_name)

    def v2_playbook_on_play_start(self, play):
        self._emit("play_start", play=play.get_name(), check_mode=bool(play.check_mode))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("task_start", task=task.get_name(), action=task.action)

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("task_start", task=task.get_name(), action=task.action, handler=True)

    def _host_event(self, status, result, **extra):
        self._emit(
            "host_result",
            status=status,
            host=result._host.get_name(),
            task=result._task.get_name(),
            action=result._task.action,
            msg=_message(result, status) if status != "skipped" else "",
            **extra,
        )

    def v2_runner_on_ok(self, result):
        status = "changed" if result._result.get("changed") else "ok"
        self._host_event(status, result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._host_event("failed", result, ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result):
        self._host_event("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._host_event("unreachable", result)

    def v2_playbook_on_no_hosts_matched(self):
        self._emit("no_hosts_matched")

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            hosts[host] = {
                k: summary.get(k, 0)
                for k in ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")
            }
        self._emit("stats", hosts=hosts)
