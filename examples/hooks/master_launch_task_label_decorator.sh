#!/bin/bash
# masterLaunchTaskLabelDecorator (runs in the master): input {task_info, framework_info, slave_info}.
# Output: mesos.Labels. They replace the task's labels.
. "$(dirname "$0")/../lib.sh"
echo "master launching task $(json_id task_id)"
cat > "$OUTPUT_FILE" <<'JSON'
{"labels": [{"key": "scheduled_by", "value": "mesos-command-modules"}]}
JSON
