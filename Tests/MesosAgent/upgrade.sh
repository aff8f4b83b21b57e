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
# Environment: MCM_IT_MASTER_PORT / MCM_IT_AGENT_PORT (default 15060/15061), MCM_IT_KEEP=1 keeps the work directory.
set -uo pipefail

if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MCM_IT_MODULE:-}" ] || [ -z "${MCM_IT_CXX_MODULE:-}" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR, MCM_IT_MODULE (ours) and MCM_IT_CXX_MODULE (the C++ module for that Mesos)"
  exit 0
fi
work=$(mktemp -d /tmp/mcm-mesos-upgrade.XXXXXX)
master=127.0.0.1:${MCM_IT_MASTER_PORT:-15060}
agent_port=${MCM_IT_AGENT_PORT:-15061}
agent=127.0.0.1:$agent_port
module_name=it_upgrade_$$
state=/var/run/mesos/isolators/command/$module_name
pids=()
passed=0
failed=0

cleanup() {
  touch "$work"/release-* 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for proc in /proc/[0-9]*; do
    case $(readlink "$proc/cwd" 2>/dev/null) in "$work"/*) kill -9 "${proc#/proc/}" 2>/dev/null ;; esac
  done
  rm -rf "$state"
  if [ -n "${MCM_IT_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

check() {  # check NAME COMMAND...: one line, ok or not ok with the command's output
  local name=$1
  shift
  if "$@" > "$work/check.out" 2>&1; then
    echo "ok - $name"
    passed=$((passed + 1))
  else
    echo "not ok - $name"
    sed 's/^/    /' "$work/check.out" | head -20
    failed=$((failed + 1))
  fi
}
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" > /dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then "$@"; return 1; fi
    sleep 0.5
  done
}

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

"$MESOS_BUILD_DIR/bin/mesos-master.sh" --ip=127.0.0.1 --port="${master#*:}" --work_dir="$work/master" \
  --registry=in_memory > "$work/master.log" 2>&1 &
pids+=($!)
agent_starts=0
start_agent() {  # start_agent LIBRARY: the agent with the isolator from that library
  manifest "$1"
  agent_starts=$((agent_starts + 1))
  agent_log=$work/agent-$agent_starts.log
  "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/agent" --runtime_dir="$work/runtime" --launcher=posix --no-systemd_enable_support \
    --isolation=filesystem/posix,com_criteo_mesos_CommandIsolator --modules="file://$work/modules.json" \
    --resources="cpus:2;mem:1024;disk:1024;ports:[31100-31200]" --recover=reconnect > "$agent_log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
  wait_for 90 grep -qi "registered with master" "$agent_log"
}
stop_agent() { kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null; sleep 1; }
start_held_task() {  # start_held_task NAME: checkpointed, runs until $work/release-NAME exists
  timeout 600 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name="$1" --checkpoint \
    --resources="cpus:0.1;mem:32" \
    --command="i=0; while [ ! -e $work/release-$1 ] && [ \$i -lt 1200 ]; do sleep 0.25; i=\$((i + 1)); done; test -e $work/release-$1" \
    > "$work/$1.out" 2>&1 &
  pids+=($!)
}
status_of() { grep -o "Received status update TASK_[A-Z_]* for task '$1'" "$work/$1.out" | tail -n 1 | awk '{print $4}'; }
is_running() { [ "$(status_of "$1")" = TASK_RUNNING ] || { echo "task $1: $(status_of "$1")"; return 1; }; }
finished() {
  wait_for 60 sh -c "grep -q 'TASK_\\(FINISHED\\|FAILED\\|KILLED\\|LOST\\|ERROR\\|GONE\\|DROPPED\\)' '$work/$1.out'"
  [ "$(status_of "$1")" = TASK_FINISHED ] || { echo "task $1: $(status_of "$1")"; tail -n 5 "$work/$1.out"; return 1; }
}
container_of() {
  basename "$(readlink -f "$(ls -d "$work"/agent/slaves/*/frameworks/*/executors/"$1"/runs/latest | head -n 1)")"
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
  start_agent "$from" || { echo "not ok - the agent starts with the $which's first module"; failed=$((failed + 1)); return; }
  start_held_task "$name"
  check "$name: a checkpointed task runs" wait_for 60 is_running "$name"
  local container
  container=$(container_of "$name")
  check "$name: prepare ran for its container and its state file is written" \
    sh -c "grep -q '\"value\":\"$container\"' '$work/calls/prepare.log' && test -s '$state/$container'"
  stop_agent
  check "$name: the agent restarts with the other module and re-registers" start_agent "$to"
  check "$name: the $which module is the one loaded" loaded "$which"
  sleep 2
  check "$name: the task survived the swap" is_running "$name"
  touch "$work/release-$name"
  check "$name: the task finishes normally (TASK_FINISHED)" finished "$name"
  check "$name: the $which module's cleanup got the config the other one saved, and the state file is gone" \
    wait_for 30 cleaned "$name"
  stop_agent
}

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); C++ module $MCM_IT_CXX_MODULE"
check "the master starts" wait_for 30 curl -sf "http://$master/health"
echo "# upgrade: a container started under the C++ module finishes under ours"
swap upgrade "$MCM_IT_CXX_MODULE" "$MCM_IT_MODULE" Swift
echo "# rollback: a container started under ours finishes under the C++ module"
swap rollback "$MCM_IT_MODULE" "$MCM_IT_CXX_MODULE" "C++"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
