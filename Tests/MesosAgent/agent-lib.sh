# Sourced by upgrade.sh and examples.sh: a master and an agent on 127.0.0.1 from MESOS_BUILD_DIR, checkpointed tasks
# that run until released, one line per check. Every wait has a deadline. Defines `work` (removed at exit unless
# MCM_IT_KEEP=1), `passed`, `failed`, `agent_log`; ports MCM_IT_MASTER_PORT / MCM_IT_AGENT_PORT (default 15060/15061).
work=$(mktemp -d /tmp/mcm-mesos-it.XXXXXX)
master=127.0.0.1:${MCM_IT_MASTER_PORT:-15060}
agent_port=${MCM_IT_AGENT_PORT:-15061}
agent=127.0.0.1:$agent_port
pids=()
passed=0
failed=0
at_exit=()  # more to do at exit, before the work directory goes

cleanup() {
  touch "$work"/release-* 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # Executors of checkpointed tasks outlive the agent: stop whatever still runs from this test's sandboxes.
  for proc in /proc/[0-9]*; do
    case $(readlink "$proc/cwd" 2>/dev/null) in "$work"/*) kill -9 "${proc#/proc/}" 2>/dev/null ;; esac
  done
  for command in "${at_exit[@]}"; do eval "$command"; done
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

start_master() {  # start_master [FLAGS...]
  "$MESOS_BUILD_DIR/bin/mesos-master.sh" --ip=127.0.0.1 --port="${master#*:}" --work_dir="$work/master" \
    --registry=in_memory "$@" > "$work/master.log" 2>&1 &
  pids+=($!)
  wait_for 30 curl -sf "http://$master/health"
}

agent_starts=0
start_agent() {  # start_agent FLAGS...: the agent's log is agent-N.log; returns once it registered
  agent_starts=$((agent_starts + 1))
  agent_log=$work/agent-$agent_starts.log
  "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/agent" --runtime_dir="$work/runtime" --launcher=posix --no-systemd_enable_support \
    --resources="cpus:2;mem:1024;disk:1024;ports:[31100-31200]" --recover=reconnect "$@" > "$agent_log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
  wait_for 90 grep -qi "registered with master" "$agent_log"
}
stop_agent() { kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null; sleep 1; }

start_held_task() {  # start_held_task NAME: checkpointed, runs until release_task NAME (or 5 minutes)
  timeout 600 "$MESOS_BUILD_DIR/src/mesos-execute" --master="$master" --name="$1" --checkpoint \
    --resources="cpus:0.1;mem:32" \
    --command="i=0; while [ ! -e $work/release-$1 ] && [ \$i -lt 1200 ]; do sleep 0.25; i=\$((i + 1)); done; test -e $work/release-$1" \
    > "$work/$1.out" 2>&1 &
  pids+=($!)
}
release_task() { touch "$work/release-$1"; }
status_of() { grep -o "Received status update TASK_[A-Z_]* for task '$1'" "$work/$1.out" | tail -n 1 | awk '{print $4}'; }
is_running() { [ "$(status_of "$1")" = TASK_RUNNING ] || { echo "task $1: $(status_of "$1")"; return 1; }; }
finished() {  # finished NAME: waits for its terminal status, which must be TASK_FINISHED
  wait_for 60 sh -c "grep -q 'TASK_\\(FINISHED\\|FAILED\\|KILLED\\|LOST\\|ERROR\\|GONE\\|DROPPED\\)' '$work/$1.out'"
  [ "$(status_of "$1")" = TASK_FINISHED ] || { echo "task $1: $(status_of "$1")"; tail -n 5 "$work/$1.out"; return 1; }
}
sandbox_of() { ls -d "$work"/agent/slaves/*/frameworks/*/executors/"$1"/runs/latest 2>/dev/null | head -n 1; }
container_of() { basename "$(readlink -f "$(sandbox_of "$1")")"; }
