#!/bin/bash
# prepare: input {container_id, container_config}. Output: mesos.slave.ContainerLaunchInfo (or nothing).
# A failure fails the container's launch.
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<JSON
{"environment": {"variables": [{"name": "PREPARED_BY", "type": "VALUE", "value": "mesos-command-modules"},
                               {"name": "CONTAINER_ID", "type": "VALUE", "value": "$(json_id container_id)"}]}}
JSON
