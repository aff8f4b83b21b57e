#!/usr/bin/env bash
# End-to-end test of libmesos_command_modules.so inside a real Mesos master and agent on 127.0.0.1: what an
# operator lives through, one line per check.
#
#   MESOS_ROOT_DIR=~/mesos MESOS_BUILD_DIR=~/mesos/build Tests/MesosAgent/run.sh
#
# Builds the module against that Mesos (mesos/CMakeLists.txt; MCM_IT_MODULE=/path/to.so uses a built one instead),
# starts mesos-master and mesos-agent with it (posix launcher and isolators: no cgroups needed), launches tasks with
# mesos-execute and checks:
#   - rollout: the isolator, with a watch command, enabled on an agent that already runs a checkpointed task;
#   - the hooks (master and agent labels, environment, remove-executor) and the isolator's events with the
#     container's id and config, usage numbers in /monitor/statistics, the metrics;
#   - hostile commands: a hanging prepare, a failing label decorator, a hanging usage command;
#   - concurrency: the prepares of a 16-task group run together;
#   - an agent crash with checkpointed tasks, one of them having lost its state file;
#   - a watch limitation ending a task;
#   - worker mode: a second isolator serves usage from one long-lived Python worker (examples/lib), gone with the
#     agent; its `when` rule runs its prepare for a labelled task and skips another; latency percentiles;
#   - the shim's futures complete in a libprocess context (Tests/ShimCheck, built from the module's build dir);
#   - with MCM_IT_FOREIGN_MODULE=/path/to.so built against another Mesos: the agent refuses to start with it;
#   - isolator_update gets the container's id, config, requests and limits (none in 1.9);
#   - one INFO line per module at load, with the version, the Mesos it was built for and its events;
#   - with MCM_IT_CLI=/usr/bin/mesos-command-modules (an installed package): that CLI validates the test's manifest
#     against this agent, and the worker imports the installed Python helper (not the checkout's examples/lib).
# Every wait has a deadline. Exits 0 only if every check passed. Without a Mesos build it says SKIPPED and exits 0.
# Needs cmake, curl and jq. CI (.ci/mesos-agents) runs it against every Mesos bundle in ../shared/mesos.
#
# Environment: MCM_IT_MASTER_PORT / MCM_IT_AGENT_PORT (default 15050/15051), MCM_IT_KEEP=1 keeps the work
# directory, SWIFT_SCRATCH_PATH shares the engine's release build between runs (see mesos/link-module.sh),
# MCM_IT_BUILD_DIR the module's CMake build directory when MCM_IT_MODULE is not in it (for the shim check).
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
for tool in cmake curl jq; do
  command -v "$tool" > /dev/null || { echo "not ok - $tool is needed by this test"; exit 1; }
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/mcm-mesos-it.XXXXXX)
master_port=${MCM_IT_MASTER_PORT:-15050}
agent_port=${MCM_IT_AGENT_PORT:-15051}
master=127.0.0.1:$master_port
agent=127.0.0.1:$agent_port
# The isolator's timeouts, small so that the hostile scripts end quickly.
prepare_timeout=3
usage_timeout=3
grace_period=1
pids=()
passed=0
failed=0

cleanup() {
  touch "$work"/release-* 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # Executors of checkpointed tasks outlive the agent: stop whatever still runs from this test's sandboxes.
  for proc in /proc/[0-9]*; do
    case $(readlink "$proc/cwd" 2>/dev/null) in "$work"/*) kill -9 "${proc#/proc/}" 2>/dev/null ;; esac
  done
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

wait_for() {  # wait_for SECONDS COMMAND...: at the deadline, runs it once more with its output, to show why
  local deadline=$((SECONDS + $1))
  shift
  until "$@" > /dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then "$@"; return 1; fi
    sleep 0.5
  done
}

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }  # seconds START END
# at_most SECONDS START END: END - START <= SECONDS (and >= 0), saying the duration.
at_most() { awk -v max="$1" -v a="$2" -v b="$3" 'BEGIN { d = b - a; printf "took %.2fs (limit %ss)\n", d, max; exit !(d >= 0 && d <= max) }'; }

mesos_version=$("$MESOS_BUILD_DIR/src/mesos-agent" --version 2>/dev/null | head -n 1)
echo "# Mesos: ${mesos_version:-unknown version} ($MESOS_BUILD_DIR)"

if [ -n "${MCM_IT_MODULE:-}" ]; then
  module=$MCM_IT_MODULE
  check "the module to test is there ($module)" test -f "$module"
else
  echo "# building the module against $MESOS_BUILD_DIR"
  build_start=$SECONDS
  MESOS_INSTALL_DIR='' cmake -S "$repo/mesos" -B "$work/build" -DCMAKE_BUILD_TYPE=Release > "$work/cmake.log" 2>&1 \
    && cmake --build "$work/build" -j 2 >> "$work/cmake.log" 2>&1
  module=$work/build/libmesos_command_modules.so
  check "the module builds against this Mesos ($((SECONDS - build_start))s)" test -f "$module"
fi
[ -f "$module" ] || { tail -30 "$work/cmake.log"; exit 1; }

# What only a real libprocess shows: where the shim completes its futures (built in the module's CMake build dir).
module_build=${MCM_IT_BUILD_DIR:-$(dirname "$module")}
if [ -f "$module_build/CMakeCache.txt" ]; then
  cmake --build "$module_build" --target shim_check > "$work/shim_check.log" 2>&1
  mkdir -p "$work/shim_check"
  shim_check() { "$module_build/shim_check" "$module" "$work/shim_check" 2>/dev/null || tail -5 "$work/shim_check.log"; }
  check "the shim completes its futures in a libprocess context, and reports Mesos-style metrics (Tests/ShimCheck)" \
    shim_check
else
  echo "# no CMake build directory beside $module: the shim check is skipped"
fi

# Scripts that record every call (input) and answer with distinctive values; each one decides from its input
# (the task's name or command in it) which scenario it plays, so that one manifest serves every check.
mkdir -p "$work/scripts" "$work/calls" "$work/tmp"
script() {  # script NAME BODY: $1 input, $2 output, $3 error; the input is appended to calls/NAME.log first
  cat > "$work/scripts/$1" <<EOF
#!/bin/sh
{ cat "\$1"; echo; } >> "$work/calls/$1.log"
$2
exit 0
EOF
  chmod +x "$work/scripts/$1"
}
# The master's decorator keeps the task's labels and adds its own.
script master_label.sh 'jq -c "{labels: ((.task_info.labels.labels // []) + [{key: \"master_hook\", value: \"it\"}])}" "$1" > "$2"'
script agent_label.sh "
if grep -q mcm-bad-labels \"\$1\"; then echo 'mcm-it: no labels for this task' > \"\$3\"; exit 1; fi
echo '{\"labels\":[{\"key\":\"agent_hook\",\"value\":\"it\"}]}' > \"\$2\""
script environment.sh 'echo "{\"variables\":[{\"name\":\"MCM_IT_DECORATED\",\"type\":\"VALUE\",\"value\":\"from-the-hook\"}]}" > "$2"'
script remove_executor.sh ''
script recover.sh ''
script prepare.sh "
now() { date +%s.%N; }
if grep -q mcm-hang-prepare \"\$1\"; then now > '$work/hang-prepare.start'; echo \$\$ > '$work/hang-prepare.pid'; exec sleep 300; fi
if grep -q mcm-group-member \"\$1\"; then echo \"start \$(now)\" >> '$work/group.log'; sleep 1; echo \"end \$(now)\" >> '$work/group.log'; fi
echo '{\"environment\":{\"variables\":[{\"name\":\"MCM_IT_PREPARED\",\"type\":\"VALUE\",\"value\":\"yes\"}]}}' > \"\$2\""
script isolate.sh ''
script usage.sh "
if grep -q mcm-slow-usage \"\$1\"; then exec sleep 300; fi
echo '{\"net_rx_packets\":4242,\"net_tx_packets\":2424}' > \"\$2\""
script cleanup.sh ''
script update.sh ''
script watch.sh 'grep -q "limit-me" "$1" && echo "{\"message\":\"mcm-it limitation\",\"reason\":\"REASON_CONTAINER_LIMITATION\"}" > "$2"'
script ruled_prepare.sh ''
# The second isolator's usage command, in worker mode: one Python process (the project's helper) for every
# usage event; it notes its pid when it starts and each container it serves.
# Installed (MCM_IT_CLI): the package's helper, as the system's python3 finds it.
helper_path="sys.path.insert(0, \"$repo/examples/lib\")" python=/usr/bin/env\ python3
[ -n "${MCM_IT_CLI:-}" ] && helper_path="# the installed helper" python=/usr/bin/python3
# It starts a helper (a cache daemon, say) in its process group, and notes its pid too. usage_worker NET_TX FILE
# writes it answering NET_TX as net_tx_bytes: a deployment replaces it with another number.
usage_worker() {
  cat > "$2" <<EOF
#!$python
import os, subprocess, sys
$helper_path
import mesos_command_modules as mcm
with open("$work/worker.helper", "w") as f:
    f.write(mcm.__file__ + "\\n")
with open("$work/worker.starts", "a") as f:
    f.write("%d\\n" % os.getpid())
helper = subprocess.Popen(["sleep", "1000"])
with open("$work/worker.helpers", "a") as f:
    f.write("%d\\n" % helper.pid)
def usage(envelope, event):
    with open("$work/worker.served", "a") as f:
        f.write(envelope["container_id"]["value"] + "\\n")
    return {"net_tx_bytes": $1}
mcm.serve(usage)
EOF
  chmod +x "$2"
}
usage_worker 7777 "$work/scripts/usage_worker.py"

cat > "$work/modules.json" <<EOF
{"libraries": [{"file": "$module", "modules": [
  {"name": "com_criteo_mesos_CommandHook2", "parameters": [
    {"key": "module_name", "value": "it_master_hook"},
    {"key": "temp_dir", "value": "$work/tmp"},
    {"key": "hook_master_launch_task_label_decorator_command", "value": "$work/scripts/master_label.sh"}]},
  {"name": "com_criteo_mesos_CommandHook", "parameters": [
    {"key": "module_name", "value": "it_hook"},
    {"key": "temp_dir", "value": "$work/tmp"},
    {"key": "hook_slave_run_task_label_decorator_command", "value": "$work/scripts/agent_label.sh"},
    {"key": "hook_slave_executor_environment_decorator_command", "value": "$work/scripts/environment.sh"},
    {"key": "hook_slave_remove_executor_hook_command", "value": "$work/scripts/remove_executor.sh"}]},
  {"name": "com_criteo_mesos_CommandIsolator", "parameters": [
    {"key": "module_name", "value": "it_isolator"},
    {"key": "temp_dir", "value": "$work/tmp"},
    {"key": "state_dir", "value": "$work/state"},
    {"key": "grace_period", "value": "$grace_period"},
    {"key": "isolator_recover_command", "value": "$work/scripts/recover.sh"},
    {"key": "isolator_prepare_command", "value": "$work/scripts/prepare.sh"},
    {"key": "isolator_prepare_timeout", "value": "$prepare_timeout"},
    {"key": "isolator_isolate_command", "value": "$work/scripts/isolate.sh"},
    {"key": "isolator_usage_command", "value": "$work/scripts/usage.sh"},
    {"key": "isolator_usage_timeout", "value": "$usage_timeout"},
    {"key": "isolator_watch_command", "value": "$work/scripts/watch.sh"},
    {"key": "isolator_watch_frequence", "value": "1"},
    {"key": "isolator_update_command", "value": "$work/scripts/update.sh"},
    {"key": "isolator_cleanup_command", "value": "$work/scripts/cleanup.sh"}]},
  {"name": "com_criteo_mesos_CommandIsolator2", "parameters": [
    {"key": "module_name", "value": "it_worker"},
    {"key": "temp_dir", "value": "$work/tmp"},
    {"key": "state_dir", "value": "$work/state"},
    {"key": "isolator_usage_command", "value": "$work/scripts/usage_worker.py"},
    {"key": "isolator_usage_mode", "value": "worker"},
    {"key": "isolator_prepare_command", "value": "$work/scripts/ruled_prepare.sh"},
    {"key": "isolator_prepare_when", "value": "label:mcm_rule=yes"}]}
]}]}
EOF
isolation=filesystem/posix,posix/cpu,posix/mem,com_criteo_mesos_CommandIsolator,com_criteo_mesos_CommandIsolator2

start_master() {
  "$MESOS_BUILD_DIR/bin/mesos-master.sh" --ip=127.0.0.1 --port="$master_port" --work_dir="$work/master" \
    --registry=in_memory --modules="file://$work/modules.json" --hooks=com_criteo_mesos_CommandHook2 \
    > "$work/master.log" 2>&1 &
  pids+=($!)
}

agent_starts=0
start_agent() {  # start_agent ISOLATION: the agent's log is agent-N.log, N counting the starts
  agent_starts=$((agent_starts + 1))
  agent_log=$work/agent-$agent_starts.log
  "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/agent" --runtime_dir="$work/runtime" --launcher=posix --no-systemd_enable_support \
    --isolation="$1" --hooks=com_criteo_mesos_CommandHook --modules="file://$work/modules.json" \
    --resources="cpus:4;mem:2048;disk:2048;ports:[31000-31100]" --recover=reconnect \
    > "$agent_log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
}

stop_agent() {  # stop_agent SIGNAL: checkpointed executors survive it
  kill "-$1" "$agent_pid"
  wait "$agent_pid" 2>/dev/null
  sleep 1
}

registered() { grep -qi "registered with master" "$agent_log"; }
# The agent's /state, then the tasks (running or completed) named $1 in it.
agent_tasks() {
  curl -sf --max-time 10 "http://$agent/state" \
    | jq --arg name "$1" '[.. | objects | select(has("slave_id") and has("state") and .name == $name)]'
}

execute() {  # execute NAME COMMAND [flags...]: runs a task to completion, output in NAME.out
  local name=$1 command=$2
  shift 2
  timeout 120 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name="$name" --command="$command" \
    --resources="cpus:0.1;mem:32" "$@" > "$work/$name.out" 2>&1
}

# A checkpointed task that runs until release_task NAME (or 5 minutes), then exits 0; its mesos-execute runs in
# the background, output in NAME.out.
start_held_task() {  # start_held_task NAME
  local name=$1
  timeout 600 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name="$name" --checkpoint \
    --resources="cpus:0.1;mem:32" \
    --command="i=0; while [ ! -e $work/release-$name ] && [ \$i -lt 1200 ]; do sleep 0.25; i=\$((i + 1)); done; test -e $work/release-$name" \
    > "$work/$name.out" 2>&1 &
  pids+=($!)
  eval "execute_pid_${name//-/_}=$!"
}
release_task() { touch "$work/release-$1"; }
# The task's last status in its mesos-execute output.
last_status() { grep -o "Received status update TASK_[A-Z_]* for task '$1'" "$work/$1.out" | tail -n 1 | awk '{print $4}'; }
is_running() {  # is_running NAME: its last status is TASK_RUNNING (else says what happened)
  local status
  status=$(last_status "$1")
  [ "$status" = TASK_RUNNING ] && return 0
  echo "task $1: last status ${status:-none}"
  grep -A3 "TASK_[A-Z]* for task '$1'" "$work/$1.out" | tail -n 4
  # What the agent said about its container: errors first.
  local said
  said=$(grep -h "$(container_of "$1")" "$work"/agent-*.log | cut -c 1-300)
  { grep "^E" <<< "$said"; grep "^W" <<< "$said"; } | head -n 3
  return 1
}
finished() {  # finished NAME: waits for its terminal status, which must be TASK_FINISHED
  wait_for 60 sh -c "grep -q 'TASK_\\(FINISHED\\|FAILED\\|KILLED\\|LOST\\|ERROR\\|GONE\\|DROPPED\\)' '$work/$1.out'"
  [ "$(last_status "$1")" = TASK_FINISHED ] || { echo "task $1: last status $(last_status "$1")"; tail -n 5 "$work/$1.out"; return 1; }
}
sandbox_of() { ls -d "$work"/agent/slaves/*/frameworks/*/executors/"$1"/runs/latest 2>/dev/null | head -n 1; }
container_of() { basename "$(readlink -f "$(sandbox_of "$1")")"; }

if [ -n "${MCM_IT_FOREIGN_MODULE:-}" ]; then
  echo "# the agent and a module built against another Mesos: $MCM_IT_FOREIGN_MODULE"
  cat > "$work/foreign.json" <<EOF
{"libraries": [{"file": "$MCM_IT_FOREIGN_MODULE", "modules": [{"name": "com_criteo_mesos_CommandIsolator",
  "parameters": [{"key": "module_name", "value": "it_foreign"}, {"key": "state_dir", "value": "$work/state"}]}]}]}
EOF
  timeout 60 "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/foreign-agent" --runtime_dir="$work/foreign-runtime" --launcher=posix \
    --no-systemd_enable_support --isolation=filesystem/posix,com_criteo_mesos_CommandIsolator \
    --modules="file://$work/foreign.json" > "$work/foreign-agent.log" 2>&1
  foreign_status=$?
  refused() {  # exits at once (not killed by the timeout) and says why
    grep -h "Error loading modules" "$work/foreign-agent.log" | cut -c 1-300
    [ "$foreign_status" -ne 0 ] && [ "$foreign_status" -ne 124 ] && grep -q "Error loading modules" "$work/foreign-agent.log"
  }
  check "the agent refuses to start with a module built against another Mesos, and says why" refused
fi

if [ -n "${MCM_IT_CLI:-}" ]; then
  echo "# the installed CLI: $MCM_IT_CLI"
  validated() {
    "$MCM_IT_CLI" validate --mesos-agent "$MESOS_BUILD_DIR/bin/mesos-agent.sh" "$work/modules.json" > "$work/validate.out" \
      || { cat "$work/validate.out"; return 1; }
    grep "library" "$work/validate.out"
    ! grep -q "is Mesos" "$work/validate.out" && grep -q "^ok    library $module: .*built for Mesos ${mesos_version#mesos }" "$work/validate.out"
  }
  check "the installed CLI validates the test's manifest, its library built for this agent's Mesos" validated
fi

echo "# starting mesos-master on 127.0.0.1:$master_port, and mesos-agent on :$agent_port without the isolator"
start_master
check "the master starts with the hook module loaded" wait_for 30 curl -sf "http://$master/health"
start_agent filesystem/posix,posix/cpu,posix/mem
check "the agent starts with the hook module loaded, the isolator not enabled" wait_for 60 registered

echo "# rollout: the isolator (with a watch command) enabled on an agent that runs a checkpointed task"
start_held_task rollout
check "a checkpointed task runs on the agent without the isolator" wait_for 60 is_running rollout
rollout_container=$(container_of rollout)
stop_agent TERM
start_agent "$isolation"
check "the agent restarts with the isolator enabled and re-registers" wait_for 60 registered
loaded_lines() {  # one INFO line per module: version, the Mesos it was built for, module, events (mode, rule)
  local built="mesos-command-modules [0-9][^,]*, built for Mesos ${mesos_version#mesos } ([^)]*)"
  grep -h "built for Mesos" "$agent_log" | cut -c 1-400
  grep -q "^I.*$built: isolator module 'it_isolator' loaded, events: isolator_cleanup (exec), isolator_isolate (exec), isolator_prepare (exec), isolator_recover (exec), isolator_update (exec), isolator_usage (exec), isolator_watch (exec)$" "$agent_log" \
    && grep -q "^I.*$built: isolator module 'it_worker' loaded, events: isolator_prepare (exec, when label:mcm_rule=yes), isolator_usage (worker)$" "$agent_log" \
    && grep -q "^I.*$built: hook module 'it_hook' loaded, events: hook_slave_executor_environment_decorator (exec), " "$agent_log"
}
check "each module logs one INFO line at load: version, Mesos, module, events with mode and rule" loaded_lines
check "rollout: recover got the task's container in its states" \
  wait_for 30 grep -q "\"value\":\"$rollout_container\"" "$work/calls/recover.sh.log"
# The isolator's watch runs every second: give it a few rounds to harm the container, if it would.
sleep 4
check "rollout: the task is still running after several watch periods" is_running rollout
check "rollout: watch ran for its container (container_id only)" \
  grep -q "\"value\":\"$rollout_container\"" "$work/calls/watch.sh.log"
rollout_statistics() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "rollout") | .statistics.net_rx_packets == 4242'
}
check "rollout: usage ran for its container: its numbers are in /monitor/statistics" rollout_statistics

echo "# a command task"
execute hello 'echo "decorated=$MCM_IT_DECORATED prepared=$MCM_IT_PREPARED"'
sandbox=$(sandbox_of hello)
check "the task ran to TASK_FINISHED" grep -q "TASK_FINISHED" "$work/hello.out"
check "the environment decorator's variable reaches the task" grep -q "decorated=from-the-hook" "$sandbox/stdout"
check "prepare's ContainerLaunchInfo environment reaches the task" grep -q "prepared=yes" "$sandbox/stdout"
container=$(container_of hello)
check "prepare got the container id and its config" \
  sh -c "grep -q '\"container_id\":{\"value\":\"$container\"}' '$work/calls/prepare.sh.log' && grep -q '\"container_config\":{' '$work/calls/prepare.sh.log' && grep -q 'decorated=' '$work/calls/prepare.sh.log'"
check "isolate got the container id, its config and a pid" \
  sh -c "grep '\"value\":\"$container\"' '$work/calls/isolate.sh.log' | grep -q '\"pid\":[0-9]'"
check "cleanup got the container id and its config" \
  wait_for 20 sh -c "grep '\"value\":\"$container\"' '$work/calls/cleanup.sh.log' | grep -q '\"container_config\":{'"
# Mesos calls update when a task lands on its executor: requests as an array; limits an object (1.9: none).
updated() {
  local envelope
  envelope=$(grep "\"value\":\"$container\"" "$work/calls/update.sh.log" | tail -n 1)
  echo "$envelope" | cut -c 1-300
  echo "$envelope" | jq -e --arg mesos "${mesos_version#mesos }" '
    .container_id.value != null and (.container_config | type) == "object"
    and (.resource_requests | type) == "array" and any(.resource_requests[]; .name == "cpus")
    and (.resource_limits | type) == "object"
    and (if ($mesos | startswith("1.9.")) then .resource_limits == {} else true end)'
}
check "update got the container id, its config, the requests and the limits (none in 1.9)" wait_for 10 updated
check "the executor environment decorator got the executor_info" grep -q '"executor_info":' "$work/calls/environment.sh.log"
check "the remove-executor hook was called for the executor" \
  wait_for 30 grep -q '"executor_id":{"value":"hello"' "$work/calls/remove_executor.sh.log"

echo "# two long checkpointed tasks: labels, usage, metrics, state files"
start_held_task long
start_held_task lost
both_running() { [ "$(last_status long)" = TASK_RUNNING ] && [ "$(last_status lost)" = TASK_RUNNING ]; }
check "the two checkpointed tasks are running" wait_for 60 both_running
# The master applies its decorator's labels to the task it sends to the agent (not to its own /state record):
# they reach the agent, where the agent decorator gets them in its task_info.
check "the master label decorator's label reaches the agent with the task" \
  grep -q '"labels":{"labels":\[{"key":"master_hook","value":"it"}' "$work/calls/agent_label.sh.log"
check "the agent label decorator's label is on the task (agent /state)" \
  sh -c "curl -sf http://$agent/state | grep -q '\"key\":\"agent_hook\",\"value\":\"it\"'"
long_statistics() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "long") | .statistics.net_rx_packets == 4242'
}
check "the usage script's numbers are in /monitor/statistics" wait_for 20 long_statistics
check "the module's metrics are in /metrics/snapshot" \
  sh -c "curl -sf http://$agent/metrics/snapshot | grep -q '\"command_modules\\/it_isolator\\/isolator_prepare\\/calls\":[1-9]'"
check "usage calls are counted" \
  sh -c "curl -sf http://$agent/metrics/snapshot | grep -q '\"command_modules\\/it_isolator\\/isolator_usage\\/calls\":[1-9]'"
long_container=$(container_of long)
lost_container=$(container_of lost)
check "the tasks' state files are written" \
  test -s "$work/state/it_isolator/$long_container" -a -s "$work/state/it_isolator/$lost_container"

echo "# hostile commands inside the agent"
hang_start=$(now)
execute mcm-hang-prepare 'echo should not run'
hang_end=$(now)
# From the prepare's start (the script writes it) to the task's failure reaching mesos-execute.
hang_start=$(cat "$work/hang-prepare.start" 2>/dev/null || echo "$hang_start")
echo "# hanging prepare: the launch failed $(seconds "$hang_start" "$hang_end")s after the prepare started (timeout ${prepare_timeout}s)"
check "a hanging prepare fails the launch (TASK_FAILED)" grep -q "TASK_FAILED for task 'mcm-hang-prepare'" "$work/mcm-hang-prepare.out"
check "the task's status message says the prepare command took too long" \
  grep -q "message: 'Failed to launch container: .*Command \"$work/scripts/prepare.sh\" took too long to execute" \
  "$work/mcm-hang-prepare.out"
check "the launch fails near the prepare timeout (${prepare_timeout}s, grace ${grace_period}s)" \
  at_most $((prepare_timeout + grace_period + 3)) "$hang_start" "$hang_end"
hang_gone() { test -s "$work/hang-prepare.pid" && ! kill -0 "$(cat "$work/hang-prepare.pid")"; }
check "the hanging prepare's process is gone" wait_for $((grace_period + 5)) hang_gone
execute after-hang 'echo fine'
check "the next task runs to TASK_FINISHED" grep -q "TASK_FINISHED" "$work/after-hang.out"

cat > "$work/bad-labels.json" <<JSON
{"name": "mcm-bad-labels", "task_id": {"value": "mcm-bad-labels"}, "agent_id": {"value": ""},
 "labels": {"labels": [{"key": "owner", "value": "mcm-it"}]},
 "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
               {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
 "command": {"value": "sleep 2"}}
JSON
timeout 120 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --task="$work/bad-labels.json" \
  > "$work/mcm-bad-labels.out" 2>&1
check "a failing label decorator leaves the task running (TASK_RUNNING, then TASK_FINISHED)" \
  sh -c "grep -q 'TASK_RUNNING for task .mcm-bad-labels' '$work/mcm-bad-labels.out' && grep -q 'TASK_FINISHED' '$work/mcm-bad-labels.out'"
# Unchanged: the task has the labels the agent decorator was given (its own and the master decorator's).
labels_unchanged() {
  local given
  given=$(grep mcm-bad-labels "$work/calls/agent_label.sh.log" | head -n 1 | jq -c '.task_info.labels.labels')
  echo "given to the agent decorator: $given"
  agent_tasks mcm-bad-labels | jq -ce --argjson given "$given" \
    '(.[0].labels | tostring | "in /state: " + .),
     (length == 1 and (.[0].labels | sort_by(.key)) == ($given | sort_by(.key))
      and ($given | map(.key) | sort) == ["master_hook", "owner"])'
}
check "its labels are unchanged in the agent's /state (its own and the master hook's)" labels_unchanged
check "the agent's hook manager logs the failure with the command and its cause" \
  grep -q "Agent label decorator hook failed for module 'com_criteo_mesos_CommandHook': .*agent_label.sh\" exited with return code 1. Cause: mcm-it: no labels for this task" \
  "$agent_log"

start_held_task mcm-slow-usage
check "a task whose usage command hangs is running" wait_for 60 is_running mcm-slow-usage
statistics_start=$(now)
curl -sf --max-time 60 "http://$agent/monitor/statistics" > "$work/statistics-slow.json"
statistics_end=$(now)
echo "# hanging usage: /monitor/statistics answered in $(seconds "$statistics_start" "$statistics_end")s (timeout ${usage_timeout}s)"
check "the hanging usage delays /monitor/statistics by no more than its timeout (${usage_timeout}s, grace ${grace_period}s)" \
  at_most $((usage_timeout + grace_period + 2)) "$statistics_start" "$statistics_end"
check "/monitor/statistics still lists that container, and the other containers' numbers" \
  jq -e 'any(.[]; .executor_id == "mcm-slow-usage")
         and any(.[]; .executor_id == "long" and .statistics.net_rx_packets == 4242)' "$work/statistics-slow.json"
release_task mcm-slow-usage
check "the task whose usage hangs finishes normally" finished mcm-slow-usage
check "the prepare and usage timeouts are counted in /metrics/snapshot" \
  sh -c "curl -sf http://$agent/metrics/snapshot | jq -e '.[\"command_modules/it_isolator/isolator_prepare/timeouts\"] >= 1
         and .[\"command_modules/it_isolator/isolator_usage/timeouts\"] >= 1'"

echo "# concurrency: a task group of 16 tasks whose prepare sleeps 1 s"
jq -n '{tasks: [range(1; 17) | {
    name: "g\(.)", task_id: {value: "g\(.)"}, agent_id: {value: ""},
    resources: [{name: "cpus", type: "SCALAR", scalar: {value: 0.05}},
                {name: "mem", type: "SCALAR", scalar: {value: 16}}],
    command: {value: "echo mcm-group-member"}}]}' > "$work/group.json"
timeout 180 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --task_group="$work/group.json" \
  --resources="cpus:0.1;mem:32" > "$work/group.out" 2>&1
check "the 16 tasks of the group ran to TASK_FINISHED" \
  test "$(grep -c "TASK_FINISHED for task 'g[0-9]*'" "$work/group.out")" -eq 16
# From the prepares' start and end times: the span from the first start to the last end, and how many ran at once.
group_summary=$(sort -k2 -n "$work/group.log" 2>/dev/null | awk '
  $1 == "start" { n++; starts++; if (n > most) most = n; if (first == "") first = $2 }
  $1 == "end"   { n--; ends++; last = $2 }
  END { printf "%d %d %.2f %d\n", starts, ends, last - first, most }')
read -r group_starts group_ends group_span group_most <<< "$group_summary"
echo "# 16 prepares of 1 s: ${group_span}s from the first start to the last end, at most $group_most at once"
check "16 prepares ran, each to its end" test "$group_starts" = 16 -a "$group_ends" = 16
# One after the other they would take 16 s. The default executor launches its nested containers together, and
# their prepares must overlap.
check "the prepares ran together, not one after the other (at least 8 at once, under 8 s in all)" \
  awk -v most="$group_most" -v span="$group_span" 'BEGIN { exit !(most >= 8 && span < 8) }'

echo "# worker mode and when rules (the second isolator, it_worker)"
worker_statistics() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "long") | .statistics.net_tx_bytes == 7777 and .statistics.net_rx_packets == 4242'
}
check "worker mode: the usage worker's numbers are in /monitor/statistics, beside the exec usage's" wait_for 20 worker_statistics
for _ in 1 2 3 4 5; do curl -sf --max-time 20 "http://$agent/monitor/statistics" > /dev/null; done
worker_once() {
  echo "$(wc -l < "$work/worker.starts") worker(s) started, $(wc -l < "$work/worker.served") usage events served"
  [ "$(wc -l < "$work/worker.starts")" -eq 1 ] && [ "$(wc -l < "$work/worker.served")" -ge 10 ]
}
check "worker mode: one worker process served every usage request" worker_once
helper_used() {
  cat "$work/worker.helper"
  if [ -n "${MCM_IT_CLI:-}" ]; then ! grep -q "^$repo/" "$work/worker.helper"; else grep -q "^$repo/examples/lib/" "$work/worker.helper"; fi
}
check "worker mode: the worker imported the ${MCM_IT_CLI:+installed }Python helper" helper_used
worker_pid=$(head -n 1 "$work/worker.starts")
worker_percentiles() {
  curl -sf "http://$agent/metrics/snapshot" | jq -e '
    .["command_modules/it_worker/isolator_usage/calls"] >= 10
    and .["command_modules/it_worker/isolator_usage/worker_restarts"] == 0
    and .["command_modules/it_worker/isolator_usage/latency_ms/count"] >= 2
    and (.["command_modules/it_worker/isolator_usage/latency_ms/p50"] | type) == "number"
    and (.["command_modules/it_worker/isolator_usage/latency_ms/p99"] | type) == "number"
    and (.["command_modules/it_worker/isolator_usage/latency_ms/p999"] | type) == "number"
    and (.["command_modules/it_isolator/isolator_prepare/latency_ms/p90"] | type) == "number"
    and .["command_modules/it_isolator/isolator_prepare/latency_ms/max"] >= .["command_modules/it_isolator/isolator_prepare/latency_ms/min"]'
}
check "the latency is a Mesos timer with its percentiles in /metrics/snapshot" worker_percentiles
ruled_task() {  # ruled_task NAME LABELS-JSON: a short task with those labels, run to completion
  jq -n --arg name "$1" --argjson labels "$2" '{name: $name, task_id: {value: $name}, agent_id: {value: ""},
    labels: {labels: $labels},
    resources: [{name: "cpus", type: "SCALAR", scalar: {value: 0.1}}, {name: "mem", type: "SCALAR", scalar: {value: 32}}],
    command: {value: "true"}}' > "$work/$1.json"
  timeout 120 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --task="$work/$1.json" > "$work/$1.out" 2>&1
}
ruled_task mcm-rule-match '[{"key": "mcm_rule", "value": "yes"}]'
ruled_task mcm-rule-skip '[{"key": "mcm_rule", "value": "no"}]'
check "when: the tasks of both rules run to TASK_FINISHED" \
  sh -c "grep -q TASK_FINISHED '$work/mcm-rule-match.out' && grep -q TASK_FINISHED '$work/mcm-rule-skip.out'"
check "when: the prepare command ran for the task its rule matches (label mcm_rule=yes)" \
  grep -q '"key":"mcm_rule","value":"yes"' "$work/calls/ruled_prepare.sh.log"
rule_skipped() {
  ! grep -q '"key":"mcm_rule","value":"no"' "$work/calls/ruled_prepare.sh.log" \
    && curl -sf "http://$agent/metrics/snapshot" | jq -e '.["command_modules/it_worker/isolator_prepare/skipped"] >= 1'
}
check "when: it did not run for the task its rule skips (mcm_rule=no), and the skip is counted" rule_skipped

echo "# worker mode: a deployment replaces the worker's script while the agent runs (written beside, renamed over)"
usage_failures() {  # failures and worker restarts of the worker's usage
  curl -sf "http://$agent/metrics/snapshot" \
    | jq -c '[.["command_modules/it_worker/isolator_usage/failures"], .["command_modules/it_worker/isolator_usage/worker_restarts"]]'
}
failures_before=$(usage_failures)
usage_worker 8888 "$work/scripts/usage_worker.py.new"
mv "$work/scripts/usage_worker.py.new" "$work/scripts/usage_worker.py"
sleep 0.1  # events that begin 10 ms after a deployment see it (the file's state is checked off Mesos' threads)
deployed() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "long") | .statistics.net_tx_bytes == 8888'
}
check "worker mode: the first /monitor/statistics after the deployment has the new script's numbers" deployed
no_failed_usage() {
  echo "usage [failures, worker restarts] before: $failures_before, after: $(usage_failures); $(wc -l < "$work/worker.starts") worker starts"
  [ "$(usage_failures)" = "$failures_before" ] && [ "$(wc -l < "$work/worker.starts")" -eq 2 ] \
    && grep -q 'usage_worker.py" (worker) changed on disk: a new file' "$agent_log"
}
check "worker mode: no usage failed for the deployment, one fresh worker, and the reload is logged" no_failed_usage
old_helper=$(head -n 1 "$work/worker.helpers")
check "worker mode: the replaced worker's helper went with its group" wait_for 10 sh -c "! kill -0 $old_helper"
worker_pid=$(tail -n 1 "$work/worker.starts")
worker_helper=$(tail -n 1 "$work/worker.helpers")

echo "# an agent crash with checkpointed tasks running, one of them having lost its state file"
rm -f "$work/state/it_isolator/$lost_container"
stop_agent KILL
check "worker mode: the worker is gone once the agent is (killed)" wait_for 10 sh -c "! kill -0 $worker_pid"
start_agent "$isolation"
check "the restarted agent recovers and re-registers" wait_for 60 registered
group_gone() {  # group_gone PGID: no live process is in that process group
  local group=$1 stat fields
  for stat in /proc/[0-9]*/stat; do
    fields=$(cat "$stat" 2>/dev/null) || continue
    fields=${fields##*) }
    # shellcheck disable=SC2086 # the fields after the command name: state ppid pgrp …
    set -- $fields
    if [ "$3" = "$group" ] && [ "$1" != Z ]; then echo "left in group $group: ${stat%/stat}"; return 1; fi
  done
}
gone_with_group() {
  ! kill -0 "$worker_helper" 2>/dev/null && group_gone "$worker_pid" \
    && grep -q "ended without stopping its workers: killed" "$agent_log"
}
check "worker mode: nothing of the crashed agent's worker group is left once the module is loaded again" \
  wait_for 10 gone_with_group
check "recover got the running container in its states" \
  wait_for 30 grep -q "\"value\":\"$long_container\"" "$work/calls/recover.sh.log"
sleep 4
check "the task survived the restart" is_running long
check "the task whose state file was lost survived the restart and several watch periods" is_running lost
check "rollout: the task is still running" is_running rollout
release_task lost
check "the task whose state file was lost finishes normally" finished lost
release_task rollout
check "rollout: the task finishes normally" finished rollout
check "rollout: cleanup did not run the command for a container the isolator never prepared" \
  sh -c "! grep -q '\"value\":\"$rollout_container\"' '$work/calls/cleanup.sh.log'"
kill "$execute_pid_long" 2>/dev/null
wait "$execute_pid_long" 2>/dev/null
check "cleanup after the restart got the recovered config" \
  wait_for 60 sh -c "grep '\"value\":\"$long_container\"' '$work/calls/cleanup.sh.log' | grep -q '\"container_config\":{'"
check "the state file is removed after cleanup" wait_for 20 sh -c "! test -e '$work/state/it_isolator/$long_container'"

echo "# a task the watch script limits"
execute limit-me 'sleep 120'
check "the watch limitation ends the task" \
  sh -c "grep -q 'TASK_FAILED\\|TASK_KILLED' '$work/limit-me.out' && grep -q 'mcm-it limitation' '$work/limit-me.out'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
