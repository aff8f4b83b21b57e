#!/bin/bash
# isolate: input {container_id, container_config, pid}. No output. A failure fails the launch.
. "$(dirname "$0")/../lib.sh"
echo "isolating pid $(grep -o '"pid":[0-9]*' "$INPUT_FILE" | cut -d: -f2) of container $(json_id container_id)"
