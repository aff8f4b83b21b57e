#!/usr/bin/env bash
# Upgrade from the C++ module (criteo/mesos-command-modules) and rollback, in a real Mesos agent on 127.0.0.1, under
# running containers, as an operator does it: swap the library in the manifest, restart the agent.
#
#   MESOS_BUILD_DIR=… MCM_IT_MODULE=/usr/lib/mesos/modules/libmesos_command_modules.so \
#   MCM_IT_CXX_MODULE=../shared/mesos/cxx-module/libmesos_command_modules-cxx-5aac181-mesos-1.11.0.so \
#     Tests/MesosAgent/upgrade.sh
#
#   - upgrade: a checkpointed task started under the C++ module (its prepare ran, its state file written) runs on
#     after the agent restarts with ours, finishes, and our cleanup gets the container's config the C++ module saved;
#   - rollback: the same, the other way round.
# Both modules keep their state in the default /var/run/mesos/isolators/command/<module_name>/ (the C++ module's
# is fixed): the test's module_name is its own, and its directory is removed at the end. Exits 0 only if every check
# passed; without MESOS_BUILD_DIR, MCM_IT_MODULE or MCM_IT_CXX_MODULE it says SKIPPED and exits 0.
# Environment: MCM_IT_MASTER_PORT / MCM_IT_AGENT_PORT (default 15060/15061), MCM_IT_KEEP=1 keeps the work directory
# (see agent-lib.sh).
set -uo pipefail

if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MCM_IT_MODULE:-}" ] || [ -z "${MCM_IT_CXX_MODULE:-}" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR, MCM_IT_MODULE (ours) and MCM_IT_CXX_MODULE (the C++ module for that Mesos)"
  exit 0
fi
module_name=it_upgrade_$$
state=/var/run/mesos/isolators/command/$module_name
. "$(dirname "$0")/agent-lib.sh"
at_exit+=('rm -rf "$state"')

mkdir -p "$work/scripts" "$work/calls"
for event in prepare cleanup; do
  printf '#!/bin/sh\n{ cat "$1"; echo; } >> "%s/calls/%s.log"\n' "$work" "$event" > "$work/scripts/$event.sh"
  chmod +x "$work/scripts/$event.sh"
done
manifest() {  # manifest LIBRARY: the same module, parameters both modules know
  cat > "$work/modules.json" <<JSON
{"libraries": [{"file": "$1", "modules": [{"name": "com_criteo_mesos_CommandIsolator", "parameters": [
  {"key": "module_name", "value": "$module_name"},
  {"key": "isolator_prepare_command", "value": "$work/scripts/prepare.sh"},
  {"key": "isolator_cleanup_command", "value": "$work/scripts/cleanup.sh"}]}]}]}
JSON
}

start_agent_with() {  # start_agent_with LIBRARY: the agent with the isolator from that library
  manifest "$1"
  start_agent --isolation=filesystem/posix,com_criteo_mesos_CommandIsolator --modules="file://$work/modules.json"
}
loaded() {  # loaded Swift|C++: which module the agent loaded (ours logs its INFO line, the C++ one does not)
  if [ "$1" = Swift ]; then grep -q "isolator module '$module_name' loaded" "$agent_log"
  else ! grep -q "isolator module '$module_name' loaded" "$agent_log"; fi
}
# cleaned NAME: the cleanup command got the task's container with the config saved at its prepare (the task's
# command is in it), and the state file is gone.
cleaned() {
  local container
  container=$(container_of "$1")
  grep "\"value\":\"$container\"" "$work/calls/cleanup.log" | jq -e --arg release "release-$1" \
    '.container_config | tostring | contains($release)' || { cat "$work/calls/cleanup.log"; return 1; }
  wait_for 10 test ! -e "$state/$container"
}
# swap NAME FROM TO WHICH: a task started under FROM's module finishes under TO's.
swap() {
  local name=$1 from=$2 to=$3 which=$4
  start_agent_with "$from" || { echo "not ok - $name: the agent starts"; failed=$((failed + 1)); return; }
  start_held_task "$name"
  check "$name: a checkpointed task runs" wait_for 60 is_running "$name"
  local container
  container=$(container_of "$name")
  check "$name: prepare ran for its container and its state file is written" \
    sh -c "grep -q '\"value\":\"$container\"' '$work/calls/prepare.log' && test -s '$state/$container'"
  stop_agent
  check "$name: the agent restarts with the other module and re-registers" start_agent_with "$to"
  check "$name: the $which module is the one loaded" loaded "$which"
  sleep 2
  check "$name: the task survived the swap" is_running "$name"
  release_task "$name"
  check "$name: the task finishes normally (TASK_FINISHED)" finished "$name"
  check "$name: the $which module's cleanup got the config the other one saved, and the state file is gone" \
    wait_for 30 cleaned "$name"
  stop_agent
}

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); C++ module $MCM_IT_CXX_MODULE"
check "the master starts" start_master
echo "# upgrade: a container started under the C++ module finishes under ours"
swap upgrade "$MCM_IT_CXX_MODULE" "$MCM_IT_MODULE" Swift
echo "# rollback: a container started under ours finishes under the C++ module"
swap rollback "$MCM_IT_MODULE" "$MCM_IT_CXX_MODULE" "C++"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
