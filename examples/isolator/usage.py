#!/usr/bin/env python3
"""usage: input {container_id, container_config}. Output: mesos.ResourceStatistics.

Called for every container on each /monitor/statistics request: a Python process per call costs ~90 ms, so this
one is written to serve both modes (examples/lib/mesos_command_modules.py) and the example manifest runs it as a
worker (isolator_usage_mode=worker). The timestamp is filled in when left out; a failure or an empty output gives
statistics with the timestamp only.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "lib"))
import mesos_command_modules as mcm  # noqa: E402


def usage(envelope, event):
    resources = (envelope.get("container_config") or {}).get("resources", [])
    limits = {r["name"]: r.get("scalar", {}).get("value", 0.0) for r in resources}
    return {
        "cpus_limit": limits.get("cpus", 0.0),
        "mem_limit_bytes": int(limits.get("mem", 0.0) * 1024 * 1024),
        "processes": 1,
        "threads": 1,
    }


mcm.serve(usage)
