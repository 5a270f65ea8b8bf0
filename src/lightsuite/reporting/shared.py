"""The settings every job of a report shares: what a page must say once so it can be read on its own.

A table shows what differs between jobs (the swept keys); what they have in common (the data set,
the epochs, the optimizer and its learning rate, the model when it is not swept) is listed once
above it. Only the groups a reader compares runs by: `data`, `model`, `task`, `trainer`, the
monitored metric and patience of the callbacks, and the seed; never paths, Hydra's or the loggers'
settings.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from lightsuite.reporting.runs import Job, as_override

GROUPS = ("data", "model", "task", "trainer")
# of a callback, what changes a run's result: what it watches and how long it waits
CALLBACK_KEYS = ("monitor", "mode", "patience")
TOP_LEVEL = ("seed", "optimized_metric")
# keys whose values are where things are written or read, not how a run trains
_PLACES = ("dir", "path", "root", "file", "cache")


def shared_settings(jobs: Sequence[Job], swept: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Per group, the `(key, value)` pairs equal in every job, the group's choice first (`model=resnet20`).

    `swept` keys are left out (the tables show them), and so is any key some job lacks; so are null
    values (a feature left off: `task.adversarial=null`), which would only lengthen the list.
    """
    per_job = [_settings(job) for job in jobs]
    if not per_job:
        return {}
    shared: dict[str, list[tuple[str, str]]] = {group: [] for group in (*GROUPS, "callbacks", "run")}
    for key, value in per_job[0].items():
        if key in swept or any(other.get(key) != value for other in per_job[1:]):
            continue
        group = key.split(".", 1)[0].split("/", 1)[0]
        shared["run" if key in TOP_LEVEL else group].append((key, value))
    return {group: pairs for group, pairs in shared.items() if pairs}


def shared_html(shared: dict[str, list[tuple[str, str]]], jobs: int) -> list[str]:
    """The settings every job shares, one line per group: what the tables below do not repeat."""
    if not shared:
        return []
    esc = html.escape
    items = []
    for group, pairs in shared.items():
        shown = " · ".join(f"<code>{esc(key)}={esc(value)}</code>" for key, value in pairs)
        items.append(f"<li><b>{esc(group)}</b>: {shown}</li>")
    what = "every job" if jobs > 1 else "the job"
    return [
        "<h2>Shared settings</h2>",
        f"<p class=meta>Equal in {what} (data, model, task, trainer, what the callbacks monitor); the "
        "tables show what differs. Each run dir's <code>config.yaml</code> holds everything.</p>",
        f"<ul id=shared>{''.join(items)}</ul>",
    ]


def _settings(job: Job) -> dict[str, str]:
    """One job's settings as `key -> value` text, the group choices (`data`, `task/optimizer`) first."""
    out: dict[str, str] = {}
    for name, choice in job.choices.items():
        if name.split("/", 1)[0] in GROUPS and choice not in (None, "null"):
            out[name] = choice
    for group in GROUPS:
        node = job.config.get(group)
        if isinstance(node, dict):
            _leaves(node, group, out)
    callbacks = job.config.get("callbacks")
    for name, node in (callbacks if isinstance(callbacks, dict) else {}).items():
        if isinstance(node, dict):
            for key in CALLBACK_KEYS:
                if key in node and node[key] is not None:
                    out[f"callbacks.{name}.{key}"] = as_override(node[key])
    for key in TOP_LEVEL:
        if key in job.config and not isinstance(job.config[key], (dict, list)):
            out[key] = as_override(job.config[key])
    return out


def _leaves(node: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        name = f"{prefix}.{key}"
        if str(key).startswith("_") or any(word in str(key).lower() for word in _PLACES):
            continue  # `_target_` (the group's choice says it), `_partial_`; paths
        if isinstance(value, dict):
            _leaves(value, name, out)
        elif value is None or (isinstance(value, str) and value.startswith(("/", "~", "${"))):
            continue  # mostly a feature left off; a path; an unresolved interpolation
        elif isinstance(value, list):
            if all(not isinstance(v, (dict, list)) for v in value):
                out[name] = json.dumps(value)
        else:
            out[name] = as_override(value)
