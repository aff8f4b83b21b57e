#!/usr/bin/env bash
# The shipped examples in a real Mesos master and agent on 127.0.0.1, as an operator who has only the package and
# the README runs them: the installed example manifest as it is, the installed module and scripts.
#
#   MESOS_BUILD_DIR=… Tests/MesosAgent/examples.sh [MANIFEST]   (default /usr/share/mesos-command-modules/examples/modules.json)
#
# Checks that the master and the agent load its modules (one INFO line each), that a task gets the environment the
# examples' decorator and prepare give it, that usage (a Python worker, through the installed helper) reaches
# /monitor/statistics, and that the isolator's cleanup leaves no state file. Exits 0 only if every check passed;
# without MESOS_BUILD_DIR or the manifest it says SKIPPED and exits 0. Environment: see agent-lib.sh.
set -uo pipefail

manifest=${1:-/usr/share/mesos-command-modules/examples/modules.json}
if [ -z "${MESOS_BUILD_DIR:-}" ] || [ ! -f "$manifest" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR, and install the package (or give the examples' manifest)"
  exit 0
fi
state=/var/run/mesos/isolators/command/example_isolator
. "$(dirname "$0")/agent-lib.sh"
# The example isolator keeps its state in the default directory: leave it as it was found.
[ -e "$state" ] || at_exit+=('rm -rf "$state"')

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); the examples of $manifest"
check "the master starts with the example hook module" \
  start_master --modules="file://$manifest" --hooks=com_criteo_mesos_CommandHook
check "the agent starts with the example hook and isolator modules" \
  start_agent --modules="file://$manifest" --hooks=com_criteo_mesos_CommandHook \
    --isolation=filesystem/posix,posix/cpu,posix/mem,com_criteo_mesos_CommandIsolator
check "each example module logs its INFO line at load" sh -c "
  grep -q \"hook module 'example_hook' loaded, events: \" '$work/master.log' &&
  grep -q \"isolator module 'example_isolator' loaded, events: \" '$agent_log'"

timeout 120 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name=example --resources="cpus:0.1;mem:32" \
  --command='echo "datacenter=$DATACENTER prepared=$PREPARED_BY"' > "$work/example.out" 2>&1
check "a task runs to TASK_FINISHED with the examples' hooks and isolator" finished example
check "the task has the environment decorator's and prepare's variables" \
  grep -q "datacenter=dc1 prepared=mesos-command-modules" "$(sandbox_of example)/stdout"

start_held_task held
check "a checkpointed task runs" wait_for 60 is_running held
statistics() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "held") | .statistics.mem_limit_bytes > 0'
}
check "the example usage (a Python worker) reaches /monitor/statistics" wait_for 30 statistics
container=$(container_of held)
release_task held
check "the task finishes normally" finished held
check "the example isolator's cleanup leaves no state file" wait_for 20 test ! -e "$state/$container"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
