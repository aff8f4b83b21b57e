#!/bin/bash
# slaveRemoveExecutorHook: input {framework_info, executor_info}. No output.
. "$(dirname "$0")/../lib.sh"
echo "executor $(json_id executor_id) removed"
