#!/usr/bin/env python3
"""slaveRunTaskLabelDecorator: input {task_info, executor_info, framework_info, slave_info}.

Output: mesos.Labels, which replace the task's labels on the agent. This one keeps the task's labels and adds
the agent's hostname.
"""
import json
import sys

input_file, output_file, error_file = sys.argv[1:4]
with open(input_file) as f:
    event = json.load(f)

labels = event["task_info"].get("labels", {}).get("labels", [])
labels.append({"key": "agent", "value": event["slave_info"]["hostname"]})

with open(output_file, "w") as f:
    json.dump({"labels": labels}, f)
