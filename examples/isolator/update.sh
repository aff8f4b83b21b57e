#!/bin/bash
# update: input {container_id, container_config, resource_requests, resource_limits}. No output.
. "$(dirname "$0")/../lib.sh"
echo "container $(json_id container_id) resized"
