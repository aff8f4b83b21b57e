#!/usr/bin/env bash
# Least privilege in a real Mesos agent on 127.0.0.1: a usage worker run as `nobody` (isolator_usage_user) serves
# /monitor/statistics, and cannot read the isolator's state directory, which root's prepare filled.
#
#   MESOS_BUILD_DIR=… MCM_IT_MODULE=/usr/lib/mesos/modules/libmesos_command_modules.so Tests/MesosAgent/least-privilege.sh
#
# The worker answers with its uid as the container's `processes`, records its uid, groups and NoNewPrivs at start,
# and at every request tries to read the container's state file and list the state directory (their paths are
# given to it in a file) and records what happened. Exits 0 only if every check passed; without MESOS_BUILD_DIR or
# MCM_IT_MODULE, or not as root, it says SKIPPED and exits 0. Environment: see agent-lib.sh.
set -uo pipefail

if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MCM_IT_MODULE:-}" ] || [ "$(id -u)" != 0 ] || ! id nobody > /dev/null 2>&1; then
  echo "SKIPPED: set MESOS_BUILD_DIR and MCM_IT_MODULE, and run as root on a host with a user nobody"
  exit 0
fi
. "$(dirname "$0")/agent-lib.sh"
module_name=it_least_privilege
state=$work/state
# nobody reaches its worker script, and the reports directory where it writes what it found; the module's own
# directories below (state, temporary files) are private.
chmod 0711 "$work"
mkdir -p "$work/scripts" "$work/reports"
chmod 0755 "$work/scripts"
chmod 0777 "$work/reports"
reports=$work/reports

cat > "$work/scripts/prepare.sh" <<'SCRIPT'
#!/bin/sh
exit 0
SCRIPT
cat > "$work/scripts/usage-worker.sh" <<SCRIPT
#!/bin/bash
{ id -u; id -G; awk '/^NoNewPrivs/ {print \$2}' /proc/self/status; } > "$reports/worker"
while IFS= read -r request; do
  id=\${request#*\\"id\\":}; id=\${id%%,*}
  if file=\$(cat "$reports/state-file" 2> /dev/null) && [ -n "\$file" ]; then
    { cat "\$file" > /dev/null 2>&1 && echo "state file: READ" || echo "state file: denied"
      ls "\$(dirname "\$file")" > /dev/null 2>&1 && echo "state dir: LISTED" || echo "state dir: denied"; } > "$reports/state"
  fi
  printf '{"id":%s,"output":{"processes":%s}}\n' "\$id" "\$(id -u)"
done
SCRIPT
chmod 0755 "$work/scripts/prepare.sh" "$work/scripts/usage-worker.sh"
cat > "$work/modules.json" <<JSON
{"libraries": [{"file": "$MCM_IT_MODULE", "modules": [{"name": "com_criteo_mesos_CommandIsolator", "parameters": [
  {"key": "module_name", "value": "$module_name"},
  {"key": "state_dir", "value": "$state"},
  {"key": "temp_dir", "value": "$work/tmp"},
  {"key": "isolator_prepare_command", "value": "$work/scripts/prepare.sh"},
  {"key": "isolator_usage_command", "value": "$work/scripts/usage-worker.sh"},
  {"key": "isolator_usage_mode", "value": "worker"},
  {"key": "isolator_usage_user", "value": "nobody"},
  {"key": "isolator_usage_failure_policy", "value": "fail"}]}]}]}
JSON

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); module $MCM_IT_MODULE"
check "the master starts" start_master
check "the agent starts with a usage worker run as nobody" \
  start_agent --modules="file://$work/modules.json" --isolation=filesystem/posix,com_criteo_mesos_CommandIsolator
check "the module logs its INFO line at load" grep -q "isolator module '$module_name' loaded, events: " "$agent_log"

start_held_task held
check "a checkpointed task runs" wait_for 60 is_running held
container=$(container_of held)
state_file=$state/$module_name/$container
check "root's prepare left the container's state file, which root reads" grep -q directory "$state_file"
echo "$state_file" > "$reports/state-file"
statistics() {
  curl -sf --max-time 20 "http://$agent/monitor/statistics" \
    | jq -e '.[] | select(.executor_id == "held") | .statistics.processes == 65534'
}
check "the usage worker, run as nobody, serves /monitor/statistics (its uid as processes)" wait_for 30 statistics
check "the worker runs as nobody, with nobody's groups, and no_new_privs" \
  sh -c "cat '$reports/worker'; [ \"\$(cat '$reports/worker')\" = \"\$(printf '65534\n%s\n1' \"\$(id -G nobody)\")\" ]"
worker_pid=$(pgrep -f "$work/scripts/usage-worker.sh" | head -n 1)
check "the worker process is nobody's (ps)" \
  sh -c "ps -o user=,pid=,args= -p '$worker_pid'; [ \"\$(ps -o uid= -p '$worker_pid' | tr -d ' ')\" = 65534 ]"
tried() {  # one more usage, after the worker was told the state file's path: what it could do
  statistics > /dev/null && [ -s "$reports/state" ] && cat "$reports/state" \
    && [ "$(cat "$reports/state")" = "$(printf 'state file: denied\nstate dir: denied')" ]
}
check "the worker cannot read the state file nor list the state directory (it tried, it reports)" wait_for 20 tried

release_task held
check "the task finishes normally" finished held
check "the isolator's cleanup (root's) removed the state file" wait_for 20 test ! -e "$state/$module_name/$container"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
