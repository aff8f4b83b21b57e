#!/bin/bash
# status: input {container_id, container_config}. Output: mesos.ContainerStatus (nothing = empty status).
. "$(dirname "$0")/../lib.sh"
cat > "$OUTPUT_FILE" <<'JSON'
{"network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": "10.1.2.3"}], "name": "example"}]}
JSON
