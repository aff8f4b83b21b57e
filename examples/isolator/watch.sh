#!/bin/bash
# watch: input {container_id, container_config}, every isolator_watch_frequence seconds.
# Output: a mesos.slave.ContainerLimitation to stop the container; nothing to keep watching.
# This example limits a container once the file "$MCM_EXAMPLE_LIMIT_DIR/<container id>" exists.
. "$(dirname "$0")/../lib.sh"
id=$(json_id container_id)
if [ -n "$MCM_EXAMPLE_LIMIT_DIR" ] && [ -e "$MCM_EXAMPLE_LIMIT_DIR/$id" ]; then
  cat > "$OUTPUT_FILE" <<'JSON'
{"message": "example limit reached", "reason": "REASON_CONTAINER_LIMITATION"}
JSON
fi
