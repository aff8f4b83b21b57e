#!/bin/bash
# cleanup: input {container_id, container_config}. No output. Called once per prepared container.
. "$(dirname "$0")/../lib.sh"
echo "cleaned up container $(json_id container_id)"
