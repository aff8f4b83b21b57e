#!/bin/bash
# slaveAttributesDecorator: input {slave_info}. Output: a JSON array of mesos.Attribute, the agent's attributes.
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<'JSON'
[{"name": "rack", "type": "TEXT", "text": {"value": "r12"}},
 {"name": "zone", "type": "TEXT", "text": {"value": "eu-west-1a"}}]
JSON
