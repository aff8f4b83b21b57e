#!/bin/bash
# slaveExecutorEnvironmentDecorator: input {executor_info}.
# Output: mesos.Environment, the executor's environment variables.
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<JSON
{"variables": [{"name": "DATACENTER", "type": "VALUE", "value": "dc1"},
               {"name": "DECORATED_EXECUTOR", "type": "VALUE", "value": "$(json_id executor_id)"}]}
JSON
