#!/bin/bash
# slavePostFetchHook: input {container_id, directory}, after the fetcher has run. No output.
. "$(dirname "$0")/../lib.sh"
echo "fetched into the sandbox of container $(json_id container_id)"
