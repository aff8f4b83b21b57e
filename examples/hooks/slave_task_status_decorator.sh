#!/bin/bash
# slaveTaskStatusDecorator: input {framework_id, task_status}.
# Output: the TaskStatus fields to change — labels and/or container_status — merged over the status.
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<'JSON'
{"labels": {"labels": [{"key": "status_decorated", "value": "true"}]}}
JSON
