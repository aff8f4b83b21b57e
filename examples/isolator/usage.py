#!/usr/bin/env python3
"""usage: input {container_id, container_config}. Output: mesos.ResourceStatistics.

Called for every container on each /monitor/statistics request, so keep it fast. The timestamp is filled in
when left out; a failure or an empty output gives statistics with the timestamp only.
"""
import json
import sys

input_file, output_file = sys.argv[1], sys.argv[2]
with open(input_file) as f:
    event = json.load(f)

limits = {r["name"]: r.get("scalar", {}).get("value", 0.0) for r in event.get("container_config", {}).get("resources", [])}
with open(output_file, "w") as f:
    json.dump({
        "cpus_limit": limits.get("cpus", 0.0),
        "mem_limit_bytes": int(limits.get("mem", 0.0) * 1024 * 1024),
        "processes": 1,
        "threads": 1,
    }, f)
