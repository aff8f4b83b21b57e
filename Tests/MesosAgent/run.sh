#!/usr/bin/env bash
# End-to-end test of libmesos_command_modules.so inside a real Mesos master and agent on 127.0.0.1.
#
#   MESOS_ROOT_DIR=~/mesos MESOS_BUILD_DIR=~/mesos/build Tests/MesosAgent/run.sh
#
# Builds the module against that Mesos build tree (mesos/CMakeLists.txt), starts mesos-master and mesos-agent with
# the module (posix launcher and isolators: no cgroups needed), launches tasks with mesos-execute and checks, one
# line per check: hook labels on the task, the decorated environment in the task's output, the isolator's scripts
# called with the container's id and config, usage numbers in /monitor/statistics, a watch limitation ending a
# task, the remove-executor hook, state recovered across an agent restart, and the module's metrics.
# Exits 0 only if every check passed. Without a Mesos build it says so and exits 0 (skipped): CI has none.
set -uo pipefail

if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MESOS_ROOT_DIR:-}" ]; then
  echo "SKIPPED: set MESOS_ROOT_DIR (Mesos sources) and MESOS_BUILD_DIR (a Mesos build tree) to run the Mesos integration test"
  exit 0
fi
for binary in bin/mesos-master.sh bin/mesos-agent.sh src/mesos-execute; do
  if [ ! -x "$MESOS_BUILD_DIR/$binary" ]; then
    echo "SKIPPED: $MESOS_BUILD_DIR/$binary is missing: build Mesos first"
    exit 0
  fi
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/mcm-mesos-it.XXXXXX)
master_port=${MCM_IT_MASTER_PORT:-15050}
agent_port=${MCM_IT_AGENT_PORT:-15051}
master=127.0.0.1:$master_port
agent=127.0.0.1:$agent_port
pids=()
passed=0
failed=0

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [ -n "${MCM_IT_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

check() {  # check NAME COMMAND...
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
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

echo "# building the module against $MESOS_BUILD_DIR"
cmake -S "$repo/mesos" -B "$work/build" -DCMAKE_BUILD_TYPE=Release > "$work/cmake.log" 2>&1 \
  && cmake --build "$work/build" -j 2 >> "$work/cmake.log" 2>&1
check "the module builds against this Mesos" test -f "$work/build/libmesos_command_modules.so"
[ -f "$work/build/libmesos_command_modules.so" ] || { tail -30 "$work/cmake.log"; exit 1; }
module=$work/build/libmesos_command_modules.so

# Scripts that record every call (event, input) and answer with distinctive values.
mkdir -p "$work/scripts" "$work/calls"
record() {  # record NAME OUTPUT-SHELL
  cat > "$work/scripts/$1" <<EOF
#!/bin/sh
{ cat "\$1"; echo; } >> "$work/calls/$1.log"
$2
exit 0
EOF
  chmod +x "$work/scripts/$1"
}
record master_label.sh 'echo "{\"labels\":[{\"key\":\"master_hook\",\"value\":\"it\"}]}" > "$2"'
record agent_label.sh 'echo "{\"labels\":[{\"key\":\"agent_hook\",\"value\":\"it\"}]}" > "$2"'
record environment.sh 'echo "{\"variables\":[{\"name\":\"MCM_IT_DECORATED\",\"type\":\"VALUE\",\"value\":\"from-the-hook\"}]}" > "$2"'
record remove_executor.sh ''
record recover.sh ''
record prepare.sh 'echo "{\"environment\":{\"variables\":[{\"name\":\"MCM_IT_PREPARED\",\"type\":\"VALUE\",\"value\":\"yes\"}]}}" > "$2"'
record isolate.sh ''
record usage.sh 'echo "{\"net_rx_packets\":4242,\"net_tx_packets\":2424}" > "$2"'
record cleanup.sh ''
record watch.sh 'grep -q "limit-me" "$1" && echo "{\"message\":\"mcm-it limitation\",\"reason\":\"REASON_CONTAINER_LIMITATION\"}" > "$2"'

cat > "$work/modules.json" <<EOF
{"libraries": [{"file": "$module", "modules": [
  {"name": "com_criteo_mesos_CommandHook2", "parameters": [
    {"key": "module_name", "value": "it_master_hook"},
    {"key": "hook_master_launch_task_label_decorator_command", "value": "$work/scripts/master_label.sh"}]},
  {"name": "com_criteo_mesos_CommandHook", "parameters": [
    {"key": "module_name", "value": "it_hook"},
    {"key": "hook_slave_run_task_label_decorator_command", "value": "$work/scripts/agent_label.sh"},
    {"key": "hook_slave_executor_environment_decorator_command", "value": "$work/scripts/environment.sh"},
    {"key": "hook_slave_remove_executor_hook_command", "value": "$work/scripts/remove_executor.sh"}]},
  {"name": "com_criteo_mesos_CommandIsolator", "parameters": [
    {"key": "module_name", "value": "it_isolator"},
    {"key": "state_dir", "value": "$work/state"},
    {"key": "isolator_recover_command", "value": "$work/scripts/recover.sh"},
    {"key": "isolator_prepare_command", "value": "$work/scripts/prepare.sh"},
    {"key": "isolator_isolate_command", "value": "$work/scripts/isolate.sh"},
    {"key": "isolator_usage_command", "value": "$work/scripts/usage.sh"},
    {"key": "isolator_watch_command", "value": "$work/scripts/watch.sh"},
    {"key": "isolator_watch_frequence", "value": "1"},
    {"key": "isolator_cleanup_command", "value": "$work/scripts/cleanup.sh"}]}
]}]}
EOF

start_master() {
  "$MESOS_BUILD_DIR/bin/mesos-master.sh" --ip=127.0.0.1 --port="$master_port" --work_dir="$work/master" \
    --registry=in_memory --modules="file://$work/modules.json" --hooks=com_criteo_mesos_CommandHook2 \
    > "$work/master.log" 2>&1 &
  pids+=($!)
}

start_agent() {
  "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/agent" --runtime_dir="$work/runtime" --launcher=posix --no-systemd_enable_support \
    --isolation=filesystem/posix,posix/cpu,posix/mem,com_criteo_mesos_CommandIsolator \
    --hooks=com_criteo_mesos_CommandHook --modules="file://$work/modules.json" \
    --resources="cpus:4;mem:2048;disk:2048;ports:[31000-31100]" --recover=reconnect \
    >> "$work/agent.log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
}

execute() {  # execute NAME COMMAND [extra flags...]: runs a task to completion, output in $work/NAME.out
  local name=$1 command=$2
  shift 2
  timeout 120 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name="$name" --command="$command" \
    --resources="cpus:0.1;mem:32" "$@" > "$work/$name.out" 2>&1
}

echo "# starting mesos-master and mesos-agent on 127.0.0.1:$master_port/$agent_port"
start_master
check "the master starts with the hook module loaded" wait_for 30 curl -sf "http://$master/health"
start_agent
check "the agent starts with the hook and isolator modules loaded" \
  wait_for 60 sh -c "curl -sf http://$master/state | grep -q '\"activated_slaves\":1'"

echo "# a command task"
execute hello 'echo "decorated=$MCM_IT_DECORATED prepared=$MCM_IT_PREPARED"'
sandbox=$(ls -d "$work"/agent/slaves/*/frameworks/*/executors/hello/runs/latest 2>/dev/null | head -n 1)
check "the task ran to TASK_FINISHED" grep -q "TASK_FINISHED" "$work/hello.out"
check "the environment decorator's variable reaches the task" grep -q "decorated=from-the-hook" "$sandbox/stdout"
check "prepare's ContainerLaunchInfo environment reaches the task" grep -q "prepared=yes" "$sandbox/stdout"
container=$(basename "$(readlink -f "$sandbox")")
check "prepare got the container id and its config" \
  sh -c "grep -q '\"container_id\":{\"value\":\"$container\"}' '$work/calls/prepare.sh.log' && grep -q '\"container_config\":{' '$work/calls/prepare.sh.log' && grep -q 'decorated=' '$work/calls/prepare.sh.log'"
check "isolate got the container id, its config and a pid" \
  sh -c "grep '\"value\":\"$container\"' '$work/calls/isolate.sh.log' | grep -q '\"pid\":[0-9]'"
check "cleanup got the container id and its config" \
  wait_for 20 sh -c "grep '\"value\":\"$container\"' '$work/calls/cleanup.sh.log' | grep -q '\"container_config\":{'"
check "the executor environment decorator got the executor_info" grep -q '"executor_info":' "$work/calls/environment.sh.log"
check "the remove-executor hook was called for the executor" \
  wait_for 30 grep -q '"executor_id":{"value":"hello"' "$work/calls/remove_executor.sh.log"

echo "# a long task: labels, usage, metrics, agent restart"
timeout 300 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name=long --command="sleep 600" \
  --resources="cpus:0.1;mem:32" --checkpoint > "$work/long.out" 2>&1 &
execute_pid=$!
pids+=($execute_pid)
check "the long task is running" wait_for 60 grep -q "TASK_RUNNING" "$work/long.out"
# The master applies its decorator's labels to the task it sends to the agent (not to its own /state record):
# they reach the agent, where the agent decorator gets them in its task_info.
check "the master label decorator's label reaches the agent with the task" \
  grep -q '"labels":{"labels":\[{"key":"master_hook","value":"it"}' "$work/calls/agent_label.sh.log"
check "the agent label decorator's label is on the task (agent /state)" \
  sh -c "curl -sf http://$agent/state | grep -q '\"key\":\"agent_hook\",\"value\":\"it\"'"
check "the usage script's numbers are in /monitor/statistics" \
  wait_for 20 sh -c "curl -sf http://$agent/monitor/statistics | grep -q '\"net_rx_packets\":4242'"
check "the module's metrics are in /metrics/snapshot" \
  sh -c "curl -sf http://$agent/metrics/snapshot | grep -q '\"command_modules\\/it_isolator\\/isolator_prepare\\/calls\":[1-9]'"
check "usage calls are counted" \
  sh -c "curl -sf http://$agent/metrics/snapshot | grep -q '\"command_modules\\/it_isolator\\/isolator_usage\\/calls\":[1-9]'"
long_sandbox=$(ls -d "$work"/agent/slaves/*/frameworks/*/executors/long/runs/latest | head -n 1)
long_container=$(basename "$(readlink -f "$long_sandbox")")
check "the long task's state file is written" test -s "$work/state/it_isolator/$long_container"

kill -9 "$agent_pid"
wait "$agent_pid" 2>/dev/null
sleep 1
start_agent
check "the restarted agent recovers and re-registers" wait_for 60 sh -c "grep -qi 're-registered with master' '$work/agent.log'"
check "recover got the running container in its states" \
  wait_for 30 grep -q "\"value\":\"$long_container\"" "$work/calls/recover.sh.log"
check "the task survived the restart" \
  sh -c "curl -sf http://$agent/state | grep -q '\"name\":\"long\"'"
kill "$execute_pid" 2>/dev/null
wait "$execute_pid" 2>/dev/null
check "cleanup after the restart got the recovered config" \
  wait_for 60 sh -c "grep '\"value\":\"$long_container\"' '$work/calls/cleanup.sh.log' | grep -q '\"container_config\":{'"
check "the state file is removed after cleanup" wait_for 20 sh -c "! test -e '$work/state/it_isolator/$long_container'"

echo "# a task the watch script limits"
execute limit-me 'sleep 120'
check "the watch limitation ends the task" \
  sh -c "grep -q 'TASK_FAILED\\|TASK_KILLED' '$work/limit-me.out' && grep -q 'mcm-it limitation' '$work/limit-me.out'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
