#!/bin/bash
# A worker in bash (isolator_usage_mode=worker): started once, it reads one request per line on stdin,
#   {"id": N, "event": "isolator_usage", "input": {"container_id": ..., "container_config": ...}}
# and answers each with one line on stdout, {"id": N, "output": ...} or {"id": N, "error": "..."}.
# It exits when stdin ends. stdout carries the protocol only: write anything else to stderr (the agent's log).
while IFS= read -r request; do
  id=${request#*\"id\":}; id=${id%%,*}
  container=$(grep -o '"container_id":{"value":"[^"]*"' <<< "$request" | head -n 1 | cut -d'"' -f6)
  echo "usage of ${container:-?}" >&2
  printf '{"id":%s,"output":{"processes":1,"threads":1}}\n' "$id"
done
