#!/bin/bash
# masterSlaveLostHook (master): input {slave_info}. No output.
. "$(dirname "$0")/../lib.sh"
echo "agent $(grep -o '"hostname":"[^"]*"' "$INPUT_FILE" | head -n 1) was lost"
