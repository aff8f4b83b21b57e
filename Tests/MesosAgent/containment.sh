#!/usr/bin/env bash
# Containment in a real Mesos agent on 127.0.0.1 (SPEC §3 "Containment"): what an isolator's prepare script starts
# and leaves behind — a `setsid` daemon (ct-daemon) and a double-forked sleeper (ct-sleeper), both out of its
# process group — is named in the agent's log (pid and name) and killed at once with
# isolator_prepare_leftover_processes=kill, lives on with keep (a kept helper that writes to its inherited stdout
# gets EPIPE), and dies with a prepare that hangs and is stopped at its timeout; the CPU time of a prepare's escaped
# child moves command_modules/<module>/isolator_prepare/cpu_seconds; once the agent stops, no cgroup of the
# module is left in the cgroup v2 hierarchy.
#
#   MESOS_BUILD_DIR=… MCM_IT_MODULE=/usr/lib/mesos/modules/libmesos_command_modules.so Tests/MesosAgent/containment.sh
#
# Four isolator modules in one agent, each with its own prepare script and an isolator_prepare_when rule on the
# task's name (kill-…, keep-…, hang-…, cpu-…), so that each task meets one of them. Exits 0 only if every check
# passed; without MESOS_BUILD_DIR or MCM_IT_MODULE, not as root, or on a host without a writable cgroup v2
# hierarchy, it says SKIPPED and exits 0. Environment: see agent-lib.sh.
set -uo pipefail

cgroup2=
for mount in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  if [ "$(stat -fc %T "$mount" 2>/dev/null)" = cgroup2fs ]; then cgroup2=$mount; break; fi
done
if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MCM_IT_MODULE:-}" ] || [ "$(id -u)" != 0 ] || [ -z "$cgroup2" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR and MCM_IT_MODULE, and run as root on a host with a cgroup v2 hierarchy"
  exit 0
fi
. "$(dirname "$0")/agent-lib.sh"
scripts=$work/scripts
mkdir -p "$scripts"
# The leftovers have names of their own (/proc/<pid>/comm), for the log and for the cleanup below.
cp "$(command -v sleep)" "$scripts/ct-daemon"
cp "$(command -v sleep)" "$scripts/ct-sleeper"
cat > "$scripts/ct-writer" <<SCRIPT
#!/bin/bash
# A kept helper that still writes to the stdout it inherited from prepare, after prepare ended.
trap '' PIPE
sleep 1
for i in 1 2 3 4 5; do
  if echo tick 2> /dev/null; then echo written >> "$work/written"; else echo EPIPE >> "$work/written"; fi
  sleep 0.2
done
exec "$scripts/ct-sleeper" 300
SCRIPT

# leaver NAME [THEN]: a prepare that starts a setsid daemon and a double-forked sleeper, their pids in
# $work/NAME.pids, waits until both run under their names, then does THEN and exits 0.
leaver() {
  cat > "$scripts/$1.sh" <<SCRIPT
#!/bin/sh
pids=$work/$1.pids
: > "\$pids"
setsid sh -c 'echo \$\$ >> $work/$1.pids; exec $scripts/ct-daemon 300' < /dev/null > /dev/null 2>&1 &
( sh -c 'echo \$\$ >> $work/$1.pids; exec $scripts/ct-sleeper 301' < /dev/null > /dev/null 2>&1 & ) &
named() { for pid in \$(cat "\$pids" 2> /dev/null); do grep -q '^ct-' /proc/\$pid/comm || return 1; done; }
while [ "\$(wc -l < "\$pids" 2> /dev/null)" != 2 ] || ! named; do sleep 0.01; done
${2:-}
exit 0
SCRIPT
}
leaver kill
leaver keep "setsid $scripts/ct-writer < /dev/null 2> /dev/null & echo \$! > $work/keep.writer
while ! grep -q '^ct-' /proc/\$!/comm; do sleep 0.01; done"
leaver hang "sleep 120"
leaver crash "sleep 120"
cat > "$scripts/cpu.sh" <<'SCRIPT'
#!/bin/sh
# 0.4 s of CPU (at most) in a child out of the process group, which prepare waits for.
setsid sh -c 'timeout 0.4 sh -c "while :; do :; done"' < /dev/null > /dev/null 2>&1 &
wait
SCRIPT
chmod 0755 "$scripts"/*

# Whatever a failed check left running: only this test's processes (their names), never another's.
kill_ours() {
  for pid in $(cat "$work"/*.pids "$work"/keep.writer 2> /dev/null); do
    case $(cat "/proc/$pid/comm" 2> /dev/null) in ct-*) kill -9 "$pid" 2> /dev/null ;; esac
  done
}
at_exit+=(kill_ours)

module() {  # module NAME PREFIX [KEY VALUE]...: the parameters of one isolator module
  local name=$1 prefix=$2
  shift 2
  printf '{"key": "module_name", "value": "it_contain_%s"},' "$name"
  printf '{"key": "state_dir", "value": "%s"}, {"key": "temp_dir", "value": "%s"},' "$work/state" "$work/tmp"
  printf '{"key": "isolator_prepare_command", "value": "%s"},' "$scripts/$name.sh"
  printf '{"key": "isolator_prepare_when", "value": "task_name~%s-.*"}' "$prefix"
  while [ $# -gt 0 ]; do printf ', {"key": "%s", "value": "%s"}' "$1" "$2"; shift 2; done
}
cat > "$work/modules.json" <<JSON
{"libraries": [{"file": "$MCM_IT_MODULE", "modules": [
  {"name": "com_criteo_mesos_CommandIsolator", "parameters": [$(module kill kill \
    isolator_prepare_leftover_processes kill)]},
  {"name": "com_criteo_mesos_CommandIsolator2", "parameters": [$(module keep keep)]},
  {"name": "com_criteo_mesos_CommandIsolator3", "parameters": [$(module hang hang isolator_prepare_timeout 2 \
    grace_period 0.5)]},
  {"name": "com_criteo_mesos_CommandIsolator4", "parameters": [$(module cpu cpu containment cgroup)]},
  {"name": "com_criteo_mesos_CommandIsolator5", "parameters": [$(module crash crash isolator_prepare_timeout 300)]}]}]}
JSON
isolation=filesystem/posix,com_criteo_mesos_CommandIsolator,com_criteo_mesos_CommandIsolator2
isolation+=,com_criteo_mesos_CommandIsolator3,com_criteo_mesos_CommandIsolator4,com_criteo_mesos_CommandIsolator5

pids_of() { cat "$work/$1.pids" "$work/$1.writer" 2> /dev/null | tr '\n' ' '; }
all_dead() {
  local pid
  [ $# -gt 0 ] || { echo "no pids"; return 1; }
  for pid in "$@"; do [ -d "/proc/$pid" ] && { ps -o pid=,comm= -p "$pid"; return 1; }; done
  return 0
}
all_alive() {
  local pid
  [ $# -gt 0 ] || { echo "no pids"; return 1; }
  for pid in "$@"; do [ -d "/proc/$pid" ] || { echo "$pid is gone"; return 1; }; done
}
count_is() { echo "$2"; [ "$(echo "$2" | wc -w)" = "$1" ]; }  # count_is N WORDS
named_in_log() {  # named_in_log CONTAINER FATE PIDS...: one WARNING of prepare's: the container, each pid and name
  local container=$1 fate=$2 line pid
  shift 2
  line=$(grep "^W.*\[TASK=$container, METHOD=prepare\] Command .* left [0-9]* process(es) running" "$agent_log")
  echo "$line"
  [ "$(printf '%s\n' "$line" | grep -c .)" = 1 ] && [[ $line == *"$fate"* ]] || return 1
  for pid in "$@"; do
    [[ $line =~ [:,]\ $pid\ \(ct-(daemon|sleeper|writer)\) ]] || { echo "no $pid in it"; return 1; }
  done
}
run_task() {  # run_task NAME: a task that ends at once, which must finish
  release_task "$1"
  start_held_task "$1"
  finished "$1"
}
metric() {  # metric NAME: its value in the agent's /metrics/snapshot
  curl -sf --max-time 20 "http://$agent/metrics/snapshot" | jq -e ".\"$1\""
}
says_where() {
  grep 'containment=' "$agent_log"
  [ "$(grep -c "containment=\(auto\|cgroup\): each command and worker runs in a cgroup of its own under $base$" \
    "$agent_log")" = 5 ]
}
subtrees() { ls -d "$base"/it_contain_* 2> /dev/null; }

echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); module $MCM_IT_MODULE"
check "the master starts" start_master
check "the agent starts with five isolator modules" start_agent --modules="file://$work/modules.json" \
  --isolation="$isolation"
if [ "$failed" -gt 0 ]; then tail -n 5 "$agent_log"; echo "$passed passed, $failed failed"; exit 1; fi
agent_cgroup=$(sed -n 's/^0:://p' "/proc/$agent_pid/cgroup")
base=$cgroup2${agent_cgroup%/}/mesos-command-modules
remove_subtrees() {  # at exit: this test's cgroups, empty once what ran in them is gone
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    find "$base" -depth -type d -path "$base/it_contain_*" -exec rmdir {} + 2> /dev/null
    [ -z "$(ls -d "$base"/it_contain_* 2> /dev/null)" ] && break
    sleep 0.5
  done
  rmdir "$base" 2> /dev/null
}
at_exit+=(remove_subtrees)
check "each module says at load that its commands run in cgroups under $base" says_where
check "each module has its cgroup subtree there" count_is 5 "$(subtrees)"

# kill: named, then gone.
check "kill: the task finishes" run_task kill-1
check "kill: its prepare left a setsid daemon and a double-forked sleeper" count_is 2 "$(pids_of kill)"
check "kill: none of them is left" wait_for 5 all_dead $(pids_of kill)
check "kill: the agent's log names both (pid and name) and the container, and says they were killed" \
  named_in_log "$(container_of kill-1)" "killed them (isolator_prepare_leftover_processes=kill)" $(pids_of kill)

# keep: named, alive, in the module's cgroup; a writer gets EPIPE; their cgroup goes once they are gone.
check "keep: the task finishes" run_task keep-1
check "keep: its prepare left a setsid daemon, a double-forked sleeper and a writer" count_is 3 "$(pids_of keep)"
check "keep: they still run after the task finished" all_alive $(pids_of keep)
check "keep: the agent's log names them (pid and name) and the container, and says they keep running" \
  named_in_log "$(container_of keep-1)" "they keep running (isolator_prepare_leftover_processes=keep" $(pids_of keep)
in_keep_cgroup() {
  local pid
  [ -n "$(pids_of keep)" ] || { echo "no pids"; return 1; }
  for pid in $(pids_of keep); do
    grep "^0::" "/proc/$pid/cgroup"
    grep -q "^0::${agent_cgroup%/}/mesos-command-modules/it_contain_keep\.[^/]*/e[0-9]*$" "/proc/$pid/cgroup" \
      || return 1
  done
}
check "keep: they run in a cgroup of the keep module's subtree" in_keep_cgroup
writer_says() { cat "$work/written"; [ "$(grep -c EPIPE "$work/written")" = 5 ]; }
check "keep: the helper writing to the stdout it inherited gets EPIPE (the event's pipe is closed)" \
  wait_for 10 writer_says
check "keep: their cgroup is marked as holding kept leftovers" ls -d "$base"/it_contain_keep.*/e*/kept
kill -9 $(pids_of keep) 2> /dev/null
no_kept_cgroup() { ! ls -d "$base"/it_contain_keep.*/e*/kept 2> /dev/null; }
check "keep: once they are killed (here, by the test), their cgroup is removed" wait_for 10 no_kept_cgroup

# hang: stopped at its timeout, with everything it started.
release_task hang-1
start_held_task hang-1
check "hang: the launch fails" wait_for 60 grep -q 'TASK_\(FAILED\|ERROR\|LOST\|DROPPED\)' "$work/hang-1.out"
check "hang: the agent's log says prepare took too long" \
  grep -q 'METHOD=prepare\] Command ".*/hang.sh" took too long to execute. Timeout: 2s' "$agent_log"
check "hang: its prepare had started a setsid daemon and a double-forked sleeper" count_is 2 "$(pids_of hang)"
check "hang: none of them is left" wait_for 5 all_dead $(pids_of hang)
empty_cgroups() {  # cgroup.events of the module's subtree says whether anything runs anywhere in it
  cat "$base"/it_contain_hang.*/cgroup.events && grep -q "^populated 0$" "$base"/it_contain_hang.*/cgroup.events
}
check "hang: nothing runs in the hang module's cgroups" empty_cgroups

# cpu: the CPU counter moves.
cpu_is_zero() { [ "$(metric command_modules/it_contain_cpu/isolator_prepare/cpu_seconds)" = 0 ]; }
check "cpu: command_modules/it_contain_cpu/isolator_prepare/cpu_seconds is 0 before any prepare" cpu_is_zero
check "cpu: the task finishes" run_task cpu-1
cpu_moved() {
  local value
  value=$(metric command_modules/it_contain_cpu/isolator_prepare/cpu_seconds)
  echo "cpu_seconds: $value"
  awk -v v="$value" 'BEGIN { exit !(v >= 0.1 && v < 5) }'
}
check "cpu: the prepare's escaped child's CPU time is counted (at least 0.1 s of its 0.4 s)" cpu_moved

# crash: the agent dies (SIGKILL) while a prepare runs; the next start kills what that prepare started.
release_task crash-1
start_held_task crash-1
crash_started() { count_is 2 "$(pids_of crash)"; }
check "crash: a prepare runs, with a setsid daemon and a double-forked sleeper" wait_for 30 crash_started
first_agent=$agent_pid
kill -KILL "$first_agent"
wait "$first_agent" 2> /dev/null
check "crash: the agent killed, what its prepare started still runs" all_alive $(pids_of crash)
check "crash: the agent starts again" start_agent --modules="file://$work/modules.json" --isolation="$isolation"
check "crash: the new agent's start killed them" wait_for 10 all_dead $(pids_of crash)
reclaimed() {  # the WARNING of the crash module's start: the dead agent, each pid and name
  local line pid
  line=$(grep "The agent or master that ran this module before (pid $first_agent) ended without stopping what its commands and workers ran: \
killed (cgroup.kill) [0-9]* process(es) in $base/it_contain_crash\.[^:]*\.$first_agent\." "$agent_log")
  echo "$line"
  [ -n "$line" ] || return 1
  for pid in $(pids_of crash); do
    [[ $line =~ [:,]\ $pid\ \(ct-(daemon|sleeper)\) ]] || { echo "no $pid in it"; return 1; }
  done
}
check "crash: the new agent's log names them (pid and name) and the dead agent" reclaimed
old_subtrees_gone() { count_is 0 "$(ls -d "$base"/it_contain_*."$first_agent".* 2> /dev/null)"; }
check "crash: the dead agent's cgroups are removed by the new agent's start" wait_for 10 old_subtrees_gone

# The agent stops (SIGTERM): Mesos exits at once, so its modules' (empty) cgroups stay for the next start.
stop_agent
populated() { grep -l "populated 1" "$base"/it_contain_*/cgroup.events 2> /dev/null; }
check "once the agent stopped, nothing runs in its modules' cgroups" count_is 0 "$(populated)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
