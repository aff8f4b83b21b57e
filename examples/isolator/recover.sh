#!/bin/bash
# recover: input {states: [ContainerState], orphans: [ContainerID]} after an agent restart. No output.
# A failure is logged and does not stop the agent (isolator_recover_failure_policy=ignore by default).
. "$(dirname "$0")/../lib.sh"
echo "recovering $(grep -o '"container_id":' "$INPUT_FILE" | wc -l) container(s)"
