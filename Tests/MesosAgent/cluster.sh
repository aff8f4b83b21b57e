#!/usr/bin/env bash
# The module in a highly available Mesos cluster on 127.0.0.1, as operators run it: ZooKeeper (Debian's `zookeeper`
# package, started here as a plain Java process), three masters (--zk, --quorum=2, --registry=replicated_log) and
# two agents (--master=zk://…), every daemon loading the module, and a real framework from PyPI (pymesos, pinned,
# installed into a venv here; Tests/MesosAgent/cluster_framework.py) launching tasks through the leading master.
#
#   MESOS_BUILD_DIR=… MCM_IT_MODULE=/path/to/libmesos_command_modules.so Tests/MesosAgent/cluster.sh
#
# Checks, one line each:
#   - the master's hooks (exec and worker mode) and the agents' hooks decorate every task (labels in /state);
#   - after SIGKILL of the leading master a new leader is elected, the old one's worker is gone, and the new
#     leader's hooks (its own worker included) decorate the next tasks; the old master restarts and removes what
#     its killed instance left in its temp_dir;
#   - an agent SIGKILLed for good: hook_master_slave_lost_hook runs once, on the leader, with the agent's id;
#   - every container the isolator prepared is cleaned up once, with its config;
#   - the circuit breaker (SPEC §6), measured: a master label decorator whose dependency is down (it hangs; timeout
#     2 s, breaker_failures=3) while the framework launches 60 tasks, with no such hook, with the breaker on and
#     with it off, side by side; then the dependency comes back and decorations resume within one cool-down;
#   - nothing of the module is left once the daemons stop, and no daemon crashed.
# Every wait has a deadline; everything started is stopped at exit. Exits 0 only if every check passed; without
# MESOS_BUILD_DIR, Java's ZooKeeper or python3's venv it says SKIPPED and exits 0.
#
# Environment: MCM_IT_MODULE (default: the installed module), MCM_IT_ZK_PORT (default 12181), MCM_IT_CLUSTER_PORT
# (default 15141: masters on it and the next two ports, agents on the two after), MCM_IT_KEEP=1 keeps the work
# directory. Needs curl, jq, java, the zookeeper package and python3 with venv; pip reaches PyPI.
set -uo pipefail

module=${MCM_IT_MODULE:-/usr/lib/mesos/modules/libmesos_command_modules.so}
zk_jar=/usr/share/java/zookeeper.jar
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
if [ -z "${MESOS_BUILD_DIR:-}" ] || [ ! -f "$module" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR and MCM_IT_MODULE (or install the package)"
  exit 0
fi
if ! command -v java > /dev/null || [ ! -f "$zk_jar" ] || ! "$python" -c 'import ensurepip, venv' 2> /dev/null; then
  echo "SKIPPED: needs java, Debian's zookeeper package and python3 with venv (apt-get install zookeeper python3-venv)"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/agent-lib.sh"

zk_port=${MCM_IT_ZK_PORT:-12181}
zk=zk://127.0.0.1:$zk_port/mesos
base=${MCM_IT_CLUSTER_PORT:-15141}
master_ports=("" "$base" $((base + 1)) $((base + 2)))
agent_ports=("" $((base + 3)) $((base + 4)))
cooldown=30         # breaker_seconds of the breaker under test (the default): a probe, one timeout, per 30 s
hook_timeout=2      # the hanging decorator's timeout
measured=200        # tasks a measured run may launch; it ends after one cool-down ($cooldown s) with fewer
declare -A pid_of   # daemon name -> pid
declare -A exit_of  # daemon name -> exit status, once it is gone
now() { date +%s.%N; }
phase_start=$SECONDS
phase() { echo "# $1 (at $((SECONDS - phase_start))s)"; }

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-master.sh" --version 2>/dev/null | head -n 1); module $module"

# --- the scripts: each appends what it did to a log, decorators keep the labels they are given and add theirs.
# MCM_CLUSTER_DAEMON (master-N, agent-N) is in every daemon's environment, which commands inherit.
mkdir -p "$work/scripts" "$work/tmp" "$work/state"
script() {  # script NAME BODY: $1 input, $2 output, $3 error
  printf '#!/bin/sh\n%s\n' "$2" > "$work/scripts/$1"
  chmod +x "$work/scripts/$1"
}
add_label() {  # the jq filter that keeps the task's labels and adds KEY=VALUE
  local filter="{labels: ((.task_info.labels.labels // []) + [{key: \"$1\", value: \$v}])}"
  echo "jq -c --arg v \"$2\" '$filter' \"\$1\" > \"\$2\""
}
script master_label.sh "$(add_label master_exec '$MCM_CLUSTER_DAEMON')"
script agent_label.sh "$(add_label agent_exec '$MCM_CLUSTER_DAEMON')"
script slave_lost.sh "echo \"\$MCM_CLUSTER_DAEMON \$(jq -r .slave_info.id.value \"\$1\")\" >> '$work/slave_lost.log'"
# The isolator logs each prepare and cleanup with the container's id and the executor id of its config.
container='.container_id.value + " " + (.container_config.executor_info.executor_id.value // "none")'
script prepare.sh "echo \"prepare \$MCM_CLUSTER_DAEMON \$(jq -r '$container' \"\$1\")\" >> '$work/containers.log'"
script cleanup.sh "echo \"cleanup \$MCM_CLUSTER_DAEMON \$(jq -r '$container' \"\$1\")\" >> '$work/containers.log'"
# The decorator whose dependency is down while $work/dependency-up is missing: it waits for it (up to 10 s; the
# module's timeout stops it first), and decorates once it is back.
script dependency.sh "
i=0
while [ ! -e '$work/dependency-up' ]; do
  [ \$i -ge 100 ] && { echo 'dependency down' > \"\$3\"; exit 1; }
  sleep 0.1; i=\$((i + 1))
done
touch '$work/decorated-again'
$(add_label dependency up)"
# One Python worker (the project's helper) serves the label decorators in worker mode, master's and agents'.
cat > "$work/scripts/label_worker.py" <<EOF
#!$python
import os, sys
sys.path.insert(0, "$repo/examples/lib")
import mesos_command_modules as mcm
daemon = os.environ["MCM_CLUSTER_DAEMON"]
with open("$work/workers.log", "a") as f:
    f.write("%s %d\n" % (daemon, os.getpid()))
def decorate(key):
    def handler(envelope, event):
        labels = envelope["task_info"].get("labels", {}).get("labels", [])
        return {"labels": labels + [{"key": key, "value": daemon}]}
    return handler
mcm.serve({"hook_master_launch_task_label_decorator": decorate("master_worker"),
           "hook_slave_run_task_label_decorator": decorate("agent_worker")})
EOF
chmod +x "$work/scripts/label_worker.py"

# --- one manifest per daemon, its own temp_dir (and state_dir)
param() { printf '{"key": "%s", "value": "%s"}' "$1" "$2"; }
hook_module() {  # hook_module NAME MODULE_NAME DAEMON KEY=VALUE...
  local name=$1 module_name=$2 daemon=$3 pair params
  shift 3
  params="$(param module_name "$module_name"), $(param temp_dir "$work/tmp/$daemon")"
  for pair in "$@"; do params+=", $(param "${pair%%=*}" "${pair#*=}")"; done
  printf '{"name": "%s", "parameters": [%s]}' "$name" "$params"
}
decorator=hook_master_launch_task_label_decorator
master_manifest() {  # master_manifest DAEMON
  local s=$work/scripts
  cat <<EOF
{"libraries": [{"file": "$module", "modules": [
 $(hook_module com_criteo_mesos_CommandHook cluster_master "$1" "${decorator}_command=$s/master_label.sh" \
     "${decorator}_when=framework=cluster-ha" "hook_master_slave_lost_hook_command=$s/slave_lost.sh"),
 $(hook_module com_criteo_mesos_CommandHook2 cluster_master_worker "$1" "${decorator}_command=$s/label_worker.py" \
     "${decorator}_mode=worker" "${decorator}_when=framework=cluster-ha"),
 $(hook_module com_criteo_mesos_CommandHook3 breaker_on "$1" "${decorator}_command=$s/dependency.sh" \
     "${decorator}_timeout=$hook_timeout" "${decorator}_when=framework=breaker-on" \
     "${decorator}_breaker_failures=3" "${decorator}_breaker_seconds=$cooldown"),
 $(hook_module com_criteo_mesos_CommandHook4 breaker_off "$1" "${decorator}_command=$s/dependency.sh" \
     "${decorator}_timeout=$hook_timeout" "${decorator}_when=framework=breaker-off")]}]}
EOF
}
agent_manifest() {  # agent_manifest DAEMON
  local s=$work/scripts agent_decorator=hook_slave_run_task_label_decorator
  cat <<EOF
{"libraries": [{"file": "$module", "modules": [
 $(hook_module com_criteo_mesos_CommandHook cluster_agent "$1" "${agent_decorator}_command=$s/agent_label.sh"),
 $(hook_module com_criteo_mesos_CommandHook2 cluster_agent_worker "$1" "${agent_decorator}_command=$s/label_worker.py" \
     "${agent_decorator}_mode=worker"),
 $(hook_module com_criteo_mesos_CommandIsolator cluster_isolator "$1" "state_dir=$work/state/$1" \
     "isolator_prepare_command=$s/prepare.sh" "isolator_cleanup_command=$s/cleanup.sh")]}]}
EOF
}
for n in 1 2 3; do master_manifest "master-$n" > "$work/master-$n.json"; done
for n in 1 2; do agent_manifest "agent-$n" > "$work/agent-$n.json"; done

# --- the daemons
declare -A starts
log_of() { echo "$work/$1-${starts[$1]}.log"; }
launched() {  # launched DAEMON PID
  pid_of[$1]=$2
  pids+=("$2")
  unset "exit_of[$1]"
}
start_zookeeper() {
  mkdir -p "$work/zk/data"
  # What the package's zkServer.sh runs, with a config of our own: standalone, loopback, no admin server.
  cat > "$work/zk/zoo.cfg" <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=$work/zk/data
clientPortAddress=127.0.0.1
clientPort=$zk_port
admin.enableServer=false
4lw.commands.whitelist=ruok
EOF
  starts[zookeeper]=1
  java -Xmx256m -cp "$zk_jar:/usr/share/java/slf4j-simple.jar" -Dzookeeper.admin.enableServer=false \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$work/zk/zoo.cfg" > "$(log_of zookeeper)" 2>&1 &
  launched zookeeper $!
}
zk_ok() { [ "$(exec 3<> "/dev/tcp/127.0.0.1/$zk_port" && printf ruok >&3 && timeout 2 cat <&3)" = imok ]; }
master_hooks=com_criteo_mesos_CommandHook,com_criteo_mesos_CommandHook2,com_criteo_mesos_CommandHook3
master_hooks+=,com_criteo_mesos_CommandHook4
start_master() {  # start_master N
  local daemon=master-$1
  starts[$daemon]=$((${starts[$daemon]:-0} + 1))
  MCM_CLUSTER_DAEMON=$daemon MCM_CLUSTER_WORK=$work "$MESOS_BUILD_DIR/bin/mesos-master.sh" --ip=127.0.0.1 \
    --port="${master_ports[$1]}" \
    --work_dir="$work/$daemon" --zk="$zk" --quorum=2 --registry=replicated_log --zk_session_timeout=4secs \
    --agent_ping_timeout=1secs --max_agent_ping_timeouts=3 --allocation_interval=250ms \
    --modules="file://$work/$daemon.json" --hooks="$master_hooks" > "$(log_of "$daemon")" 2>&1 &
  launched "$daemon" $!
}
start_agent() {  # start_agent N
  local daemon=agent-$1
  starts[$daemon]=$((${starts[$daemon]:-0} + 1))
  MCM_CLUSTER_DAEMON=$daemon MCM_CLUSTER_WORK=$work "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$zk" \
    --ip=127.0.0.1 \
    --port="${agent_ports[$1]}" --work_dir="$work/$daemon" --runtime_dir="$work/runtime-$1" --launcher=posix \
    --no-systemd_enable_support --isolation=filesystem/posix,posix/cpu,posix/mem,com_criteo_mesos_CommandIsolator \
    --hooks=com_criteo_mesos_CommandHook,com_criteo_mesos_CommandHook2 --modules="file://$work/$daemon.json" \
    --resources="cpus:16;mem:8192;disk:1024;ports:[$((31000 + 100 * $1))-$((31099 + 100 * $1))]" \
    > "$(log_of "$daemon")" 2>&1 &
  launched "$daemon" $!
}
alive() { [ -n "${pid_of[$1]:-}" ] && [ -z "${exit_of[$1]+x}" ]; }
stop() {  # stop DAEMON SIGNAL: and waits for it (10 s), noting its exit status
  local daemon=$1 pid=${pid_of[$1]} i
  kill "-$2" "$pid" 2> /dev/null
  for i in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
  { wait "$pid"; } 2> /dev/null
  exit_of[$daemon]=$?
}
port_of() {
  case $1 in master-*) echo "${master_ports[${1#master-}]}" ;; agent-*) echo "${agent_ports[${1#agent-}]}" ;; esac
}
leader() {  # the daemon name of the elected master, if one
  local n
  for n in 1 2 3; do
    alive "master-$n" || continue
    curl -sf --max-time 3 "http://127.0.0.1:${master_ports[$n]}/metrics/snapshot" \
      | jq -e '.["master/elected"] == 1' > /dev/null 2>&1 && { echo "master-$n"; return 0; }
  done
  return 1
}
active_agents() {  # active_agents LEADER COUNT: the leader has COUNT active agents
  local count
  count=$(curl -sf --max-time 5 "http://127.0.0.1:$(port_of "$1")/slaves" | jq '[.slaves[] | select(.active)] | length')
  echo "$1 has ${count:-no} active agent(s), expected $2"
  [ "${count:-0}" -eq "$2" ]
}
agent_id() { curl -sf --max-time 5 "http://127.0.0.1:$(port_of "$1")/state" | jq -r .id; }
metric() {  # metric DAEMON NAME
  curl -sf --max-time 10 "http://127.0.0.1:$(port_of "$1")/metrics/snapshot" | jq --arg m "$2" '.[$m]'
}

# --- the framework
venv=$work/venv
install_pymesos() {
  # pymesos 0.3.15 needs http-parser, whose C extension does not build on Python 3.11: its setup.py has no switch
  # for that, so it is built with its pure-Python parser only (http_parser.pyparser, which pymesos supports).
  "$python" -m venv "$venv" \
    && "$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$work/pip" http-parser==0.9.0 \
    && tar -xzf "$work/pip/http-parser-0.9.0.tar.gz" -C "$work/pip" \
    && sed -i 's/^    run_setup(not IS_PYPY)$/    run_setup(False)/' "$work/pip/http-parser-0.9.0/setup.py" \
    && grep -q '^    run_setup(False)$' "$work/pip/http-parser-0.9.0/setup.py" \
    && "$venv/bin/pip" install -q --no-deps "$work/pip/http-parser-0.9.0" pymesos==0.3.15 kazoo==2.11.0 \
         six==1.17.0 addict==2.4.0 \
    && "$venv/bin/python" -c 'import pymesos, http_parser.http as h
assert h.HttpParser.__module__ == "http_parser.pyparser"'
}
framework() {  # framework RUN ARGS...: runs cluster_framework.py, its report in RUN.json, its log in RUN.log
  local run=$1
  shift
  timeout 200 "$venv/bin/python" "$here/cluster_framework.py" --master="$zk" --prefix="$run" \
    --output="$work/$run.json" "$@" \
    > "$work/$run.log" 2>&1
}
all_finished() {  # all_finished RUN COUNT: the run's COUNT tasks all ended TASK_FINISHED
  jq -e --argjson n "$2" '(.tasks | length) == $n and all(.tasks[]; .states[-1] == "TASK_FINISHED")' "$work/$1.json" \
    > /dev/null 2>&1 && return 0
  echo "run $1:"
  tail -n 5 "$work/$1.log"
  jq -c '[.tasks[] | [.id, .states[-1]]]' "$work/$1.json"
  return 1
}
# The tasks of every live agent's /state (running or completed): id, agent daemon, labels as an object.
agent_tasks() {
  local n
  for n in 1 2; do
    alive "agent-$n" || continue
    curl -sf --max-time 10 "http://127.0.0.1:${agent_ports[$n]}/state" | jq -c --arg d "agent-$n" '
      [.. | objects | select(has("slave_id") and has("state") and has("framework_id"))
       | {id, daemon: $d, labels: ((.labels // []) | map({(.key): .value}) | add // {})}]'
  done | jq -s 'add'
}
decorated() {  # decorated RUN MASTER: every task of the run has the labels of MASTER's hooks and of its agent's
  agent_tasks > "$work/agent-tasks.json"
  jq -e --arg m "$2" --slurpfile state "$work/agent-tasks.json" '
    [.tasks[].id] as $ids | ($state[0] | map(select(.id as $id | $ids | index($id)))) as $found
    | ($found | map(select(.labels.master_exec != $m or .labels.master_worker != $m
                           or .labels.agent_exec != .daemon or .labels.agent_worker != .daemon))) as $bad
    | "\($ids | length) tasks, \($found | length) in the agents /state, undecorated: \($bad)",
      (($ids | length) > 0 and ($found | length) == ($ids | length) and ($bad | length) == 0)' "$work/$1.json"
}

# --- cluster up
phase "ZooKeeper on 127.0.0.1:$zk_port, three masters on ${master_ports[*]:1}, two agents on ${agent_ports[*]:1}"
start_zookeeper
check "ZooKeeper (the zookeeper package's QuorumPeerMain) answers on 127.0.0.1:$zk_port" wait_for 30 zk_ok
(install_pymesos > "$work/pip.log" 2>&1; echo $? > "$work/pip.status") &
pip_pid=$!
pids+=("$pip_pid")
for n in 1 2 3; do start_master "$n"; done
check "a leading master is elected among the three (ZooKeeper, replicated log, quorum 2)" wait_for 60 leader
leader=$(leader)
for n in 1 2; do start_agent "$n"; done
check "both agents register with the leader ($leader)" wait_for 60 active_agents "$leader" 2
wait "$pip_pid"
pymesos_ok() { [ "$(cat "$work/pip.status")" = 0 ] || { tail -n 20 "$work/pip.log"; return 1; }; }
check "pymesos 0.3.15 installs into a venv, with http-parser's pure-Python parser" pymesos_ok
loaded() {  # every daemon logged the load line of each of its modules
  local daemon module_name ok=0
  for daemon in master-1 master-2 master-3; do
    for module_name in cluster_master cluster_master_worker breaker_on breaker_off; do
      grep -q "hook module '$module_name' loaded" "$(log_of "$daemon")" \
        || { echo "$daemon: $module_name not loaded"; ok=1; }
    done
  done
  for daemon in agent-1 agent-2; do
    for module_name in "hook module 'cluster_agent'" "hook module 'cluster_agent_worker'" \
      "isolator module 'cluster_isolator'"; do
      grep -q "$module_name loaded" "$(log_of "$daemon")" || { echo "$daemon: $module_name not loaded"; ok=1; }
    done
  done
  return $ok
}
check "every daemon loaded its modules (one load line each)" loaded

phase "tasks through the leader ($leader), from pymesos"
framework ha-1 --name cluster-ha --tasks 8
check "pymesos runs 8 tasks to TASK_FINISHED through the leading master" all_finished ha-1 8
check "the leader's hooks (exec, worker) and the agents' hooks (exec, worker) decorated every task" \
  decorated ha-1 "$leader"
workers_of() { awk -v d="$1" '$1 == d { print $2 }' "$work/workers.log"; }
old_leader=$leader
old_workers=$(workers_of "$old_leader")

phase "SIGKILL of the leading master ($old_leader)"
kill_start=$(now)
stop "$old_leader" KILL
check "a new leader is elected among the two others" wait_for 60 leader
leader=$(leader)
echo "# new leader: $leader, $(awk -v a="$kill_start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s after the kill"
check "the two agents re-register with the new leader" wait_for 60 active_agents "$leader" 2
workers_gone() {
  local p
  for p in $old_workers; do kill -0 "$p" 2> /dev/null && { echo "worker $p alive"; return 1; }; done
  test -n "$old_workers"
}
check "the killed master's worker ($old_workers) is gone with it" wait_for 10 workers_gone
framework ha-2 --name cluster-ha --tasks 8
check "pymesos runs 8 more tasks to TASK_FINISHED through the new leader" all_finished ha-2 8
check "the new leader's hooks (its own worker included) and the agents' hooks decorated every one" \
  decorated ha-2 "$leader"
check "the new leader started its own worker" test -n "$(workers_of "$leader")"
old_instance=${pid_of[$old_leader]}
start_master "${old_leader#master-}"
rejoined() {
  grep -q "hook module 'cluster_master' loaded" "$(log_of "$old_leader")" \
    && curl -sf "http://127.0.0.1:$(port_of "$old_leader")/health"
}
check "the killed master restarts and rejoins (a follower)" wait_for 60 rejoined
swept() {
  ls -a "$work/tmp/$old_leader"
  ! ls -a "$work/tmp/$old_leader" | grep -q "\.$old_instance\."
}
check "its restart removed the killed instance's private directories and worker records" swept

phase "an agent SIGKILLed for good"
lost_agent=agent-2
lost_id=$(agent_id "$lost_agent")
# Before the kill, every container it prepared is cleaned up (no task runs on it any more).
containers_done() {  # containers_done: every prepared container was cleaned up once, with the same config
  awk '{ key = $2 " " $3 " " $4; if ($1 == "prepare") p[key]++; else c[key]++ }
    END { bad = 0; n = 0
      for (k in p) {
        n++
        if (p[k] != 1 || c[k] != 1) { print "prepared " p[k] ", cleaned up " c[k] + 0 ": " k; bad = 1 }
      }
      for (k in c) if (!(k in p)) { print "cleaned up, never prepared (or another config): " k; bad = 1 }
      print n " containers prepared"; exit bad || n == 0 }' "$work/containers.log"
}
check "every container prepared so far is cleaned up once, with its config" wait_for 30 containers_done
lost_start=$SECONDS
stop "$lost_agent" KILL
agent_workers_gone() {
  local p
  for p in $(workers_of "$lost_agent"); do kill -0 "$p" 2> /dev/null && return 1; done
  return 0
}
check "the killed agent's worker is gone with it" wait_for 10 agent_workers_gone
check "hook_master_slave_lost_hook runs on the leader ($leader) with the agent's id ($lost_id)" \
  wait_for 60 grep -qx "$leader $lost_id" "$work/slave_lost.log"
echo "# the agent was declared lost $((SECONDS - lost_start))s after its kill"

phase "the circuit breaker: a decorator whose dependency is down (timeout ${hook_timeout}s, breaker_failures=3,\
 cool-down ${cooldown}s)"
leader_port=$(port_of "$leader")
probe() {  # probe FILE: when and how long the leader's /metrics/snapshot took, every 0.25 s, until killed
  while :; do
    echo "$(now) $(curl -s -o /dev/null --max-time 60 -w '%{time_total}' \
      "http://127.0.0.1:$leader_port/metrics/snapshot")" >> "$1"
    sleep 0.25
  done
}
# A framework that keeps 4 launches going (launched, not yet started): the rate is the master's and the agent's
# per task, not how fast one agent starts 60 executors at once.
measure() {  # measure RUN CONFIG: 3 warm-up tasks, then launches for one cool-down while probing /metrics/snapshot
  local run=$1 config=$2
  probe "$work/probe-$run.txt" &
  local probe_pid=$!
  pids+=("$probe_pid")
  framework "breaker-$run" --name "breaker-$config" --warmup 3 --tasks "$measured" --in-flight 4 --deadline "$cooldown"
  kill "$probe_pid" 2> /dev/null
  wait "$probe_pid" 2> /dev/null
}
rate() { jq -r '.rate // 0' "$work/breaker-$1.json" 2> /dev/null || echo 0; }
latency() {  # latency CONFIG: "p50 max" in ms of the requests made once the measured launches began
  local start
  start=$(jq -r '.measure_start // 0' "$work/breaker-$1.json" 2> /dev/null || echo 0)
  awk -v s="$start" '$1 + 0 >= s + 0 { print $2 }' "$work/probe-$1.txt" | sort -n \
    | awk '{ v[NR] = $1 * 1000 } END { if (NR == 0) { print "none none"; exit }
      printf "%.0f %.0f\n", v[int((NR + 1) / 2)], v[NR] }'
}
measure none none
rm -f "$work/dependency-up"
measure on on
breaker=command_modules/breaker_on/$decorator
open_now() { [ "$(metric "$leader" "$breaker/breaker_open")" = 1 ]; }
check "with the dependency down, the breaker opened (…/breaker_open = 1 on the leader)" open_now
short_circuited() {  # every measured launch but the probes (one per cool-down) was answered at once
  local n launched span
  n=$(metric "$leader" "$breaker/short_circuited")
  read -r launched span < <(jq -r '"\(.measured_launched) \((.tasks | map(.reached // 0) | max) - .measure_start)"' \
    "$work/breaker-on.json")
  echo "short_circuited: $n, measured launches: $launched in ${span}s"
  awk -v n="${n:-0}" -v l="$launched" -v s="$span" -v c=$cooldown \
    'BEGIN { exit !(n + 0 >= l - int(s / c) - 1 && l > 0) }'
}
check "the measured launches were answered at once (…/short_circuited), but for one probe per cool-down" \
  short_circuited
# Two more pairs, alternated with the first: a 2-core VM has its pauses, which slow one run in either
# configuration (runs without the hook differed by 20 % in CI); the median run of each configuration is compared,
# every run printed. Each run lasts one cool-down, so that a run with the breaker on pays its probe (one timeout,
# every cool-down + timeout) once, or at most once: its cost is in the figure, not left to chance.
measure none-2 none
measure on-2 on
measure none-3 none
measure on-3 on

phase "the dependency comes back: decorations resume within one cool-down (${cooldown}s)"
# The last measured run may end with a probe still in the leader's hook: let it time out first, so that it does
# not see the dependency back and leave the stop file before this run launches anything (a race seen in CI).
probe_done() { ! pgrep -f "$work/scripts/dependency.sh" > /dev/null; }
check "no decorator of the measured runs is still running" wait_for $((hook_timeout + 5)) probe_done
rm -f "$work/decorated-again"
touch "$work/dependency-up"
back=$(now)
framework breaker-back --name breaker-on --tasks $((2 * cooldown)) --interval 1 --deadline $((3 * cooldown)) \
  --stop-file "$work/decorated-again"
resumed() {  # the first task decorated (label dependency=up in /state) was launched within one cool-down
  agent_tasks > "$work/agent-tasks.json"
  jq -e --argjson back "$back" --argjson limit $((cooldown + hook_timeout)) --slurpfile state "$work/agent-tasks.json" '
    ($state[0] | map(select(.labels.dependency == "up") | .id)) as $up
    | [.tasks[] | select(.id as $id | $up | index($id))] as $decorated
    | ($decorated | map(.launched) | min) as $first
    | "\($decorated | length) of \(.tasks | length) tasks decorated, the first launched"
      + " \(($first // 1e12) - $back | . * 10 | round / 10)s after the dependency came back",
      ($first != null and $first - $back <= $limit)' "$work/breaker-back.json"
}
check "a task launched within one cool-down (+ one timeout) of the dependency's return is decorated again" resumed
closed() { [ "$(metric "$leader" "$breaker/breaker_open")" = 0 ]; }
check "the breaker closed (…/breaker_open = 0)" closed
rm -f "$work/dependency-up"
measure off off
touch "$work/dependency-up"  # the stalled launches end quickly
check "the leader answers again once the dependency is back" \
  wait_for 60 curl -sf --max-time 5 "http://127.0.0.1:$leader_port/health"

median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }  # of three
none_rate=$(median "$(rate none)" "$(rate none-2)" "$(rate none-3)")
on_rate=$(median "$(rate on)" "$(rate on-2)" "$(rate on-3)")
off_rate=$(rate off)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "?" }'; }
figures() {  # figures CONFIG LABEL
  local p50 max reached
  read -r p50 max <<< "$(latency "$1")"
  reached=$(jq -r '"\(.measured_reached)/\(.measured_launched)"' "$work/breaker-$1.json" 2> /dev/null)
  printf '#   %-32s %5.1f tasks/s %5s %%  %6s started  %6s / %6s ms\n' "$2" "$(rate "$1")" \
    "$(ratio "$(rate "$1")" "$none_rate")" "$reached" "$p50" "$max"
}
echo "# breaker figures, Mesos $("$MESOS_BUILD_DIR/bin/mesos-master.sh" --version 2>/dev/null | awk '{print $2}')," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg):"
echo "#   launches for ${cooldown} s (one cool-down) after 3 warm-up ones, 4 at a time:" \
  "rate, % of no hook, started/launched, /metrics/snapshot p50 / max"
figures none "no hanging hook"
figures on "breaker on (opened in the warm-up)"
figures none-2 "no hanging hook, 2nd"
figures on-2 "breaker on, 2nd"
figures none-3 "no hanging hook, 3rd"
figures on-3 "breaker on, 3rd"
figures off "breaker off"
printf '#   (the %% column: of the median run without the hook, %.1f tasks/s; the median with the breaker on: %.1f)\n' \
  "$none_rate" "$on_rate"
check "breaker on, dependency down: launches at >= 80 % of the rate without the hook (the median of three runs each)" \
  awk -v a="$on_rate" -v b="$none_rate" 'BEGIN { exit !(b > 0 && a >= 0.8 * b) }'
# Off, each launch holds the master for the hook's timeout: at most one launch per timeout, whatever the agents do.
check "breaker off, dependency down: the stall is shown (at most 1 launch per ${hook_timeout}s, under half the rate\
 without the hook)" \
  awk -v a="$off_rate" -v b="$none_rate" -v t=$hook_timeout 'BEGIN { exit !(b > 0 && a <= 1.05 / t && a < 0.5 * b) }'

phase "the end: every container cleaned up, the daemons stopped"
check "every prepared container is cleaned up once, with its config" wait_for 60 containers_done
lost_once() { cat "$work/slave_lost.log"; [ "$(wc -l < "$work/slave_lost.log")" -eq 1 ]; }
check "hook_master_slave_lost_hook ran once in all, on one master" lost_once
for daemon in agent-1 master-1 master-2 master-3; do alive "$daemon" && stop "$daemon" TERM; done
# What is left of the module: processes (its commands, workers, anything they started have the daemons'
# MCM_CLUSTER_WORK in their environment, or run a script of ours), and event files in the daemons' temp_dirs.
module_left() {
  local proc left=0
  for proc in /proc/[0-9]*; do
    if tr '\0' '\n' 2> /dev/null < "$proc/environ" | grep -qx "MCM_CLUSTER_WORK=$work" \
      || tr '\0' ' ' 2> /dev/null < "$proc/cmdline" | grep -q "$work/scripts/"; then
      echo "left: ${proc#/proc/} $(tr '\0' ' ' < "$proc/cmdline")"; left=1
    fi
  done
  find "$work/tmp" -type f ! -path '*.workers.*' ! -path "$work/tmp/*/*/instance" | sed 's/^/left: /'
  # A daemon stopped (SIGTERM) or killed destroys no module: its private directories, each holding only its
  # `instance` record (what proves to the next start that its maker is gone, SPEC §3), and its worker records
  # stay until the module next starts there (the restarted master showed that); none of an earlier instance.
  local daemon entry
  for daemon in "${!pid_of[@]}"; do
    [ -d "$work/tmp/$daemon" ] || continue
    for entry in "$work/tmp/$daemon"/*; do
      case ${entry##*/} in *".${pid_of[$daemon]}."*) ;; *) echo "left by an earlier instance: $entry"; left=1 ;; esac
    done
  done
  [ $left -eq 0 ] && [ -z "$(find "$work/tmp" -type f ! -path '*.workers.*' ! -path "$work/tmp/*/*/instance")" ]
}
check "nothing of the module is left once the daemons stop (no process, no event file)" wait_for 10 module_left
stop zookeeper TERM
# Killed: 137 (SIGKILL). Stopped: Mesos exits from its SIGTERM handler, ZooKeeper's JVM with 143.
no_crash() {
  local daemon bad=0 log status expected
  for daemon in "${!exit_of[@]}"; do
    status=${exit_of[$daemon]}
    expected=TERM
    [ "$daemon" = "$lost_agent" ] && expected=137
    echo "$daemon exited with $status"
    if [ "$expected" = 137 ]; then [ "$status" = 137 ] || bad=1
    elif [ "$status" -gt 128 ] && [ "$status" != 143 ]; then bad=1
    fi
  done
  grep -L "Received signal SIGTERM" "$work"/master-*.log "$work"/agent-1-*.log | grep -v "$old_leader-1.log" \
    | sed 's/^/no SIGTERM line: /' | grep . && bad=1
  for log in "$work"/master-*.log "$work"/agent-*.log; do
    if grep -Eq '^F[0-9]{4} |\*\*\* (Check failure|SIGSEGV|SIGABRT|Aborted)|terminate called' "$log"; then
      echo "$(basename "$log"):"; grep -Em 3 '^F[0-9]{4} |\*\*\*|terminate called' "$log"; bad=1
    fi
  done
  return $bad
}
check "no daemon crashed (exit statuses; no fatal line, no abort in any log)" no_crash

echo "# cluster test: $((SECONDS - phase_start))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
