#!/bin/bash
# slavePreLaunchDockerTaskExecutorDecorator: input {task_info, executor_info, container_name,
# container_work_directory, mapped_sandbox_directory, env}. Output: mesos.DockerTaskExecutorPrepareInfo.
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<'JSON'
{"taskEnvironment": {"variables": [{"name": "DOCKER_DECORATED", "type": "VALUE", "value": "true"}]}}
JSON
