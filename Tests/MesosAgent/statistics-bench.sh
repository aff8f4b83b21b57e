#!/usr/bin/env bash
# What the isolator's `usage` costs a real Mesos agent's /monitor/statistics (which calls every isolator's usage
# for every container), by hand, not in CI:
#
#   MESOS_BUILD_DIR=… MCM_IT_MODULE=/usr/lib/mesos/modules/libmesos_command_modules.so Tests/MesosAgent/statistics-bench.sh
#
# A master and one agent on 127.0.0.1 (posix launcher, posix/cpu and posix/mem, the isolator), one framework of its
# own (the v1 scheduler HTTP API, Python's standard library) that launches checkpointed command tasks (`sleep`,
# cpus 0.01, mem 16), 40 then 100 of them. For each number of containers, the agent is restarted
# (--recover=reconnect: the same containers, executors and processes every time) once per configuration, with the
# same isolator module and only its usage parameters changed:
#   none    the isolator loaded without isolator_usage_command;
#   exec    isolator_usage_mode=exec, a `#!/bin/sh` script that writes the numbers to its output file;
#   worker  isolator_usage_mode=worker, one Python worker (examples/lib/mesos_command_modules.py beside it) that
#           answers the same numbers;
#   exec-python (only if asked for in MCM_BENCH_CONFIGS) that Python script in exec mode.
# After each restart: every container listed, with the usage's numbers (or without them, for none), then 5
# requests of warm-up, then the measured requests, one after the other, 0.6 s apart (curl's time_total; the agent
# answers this endpoint twice a second at most, see below). The configurations run
# in rounds, in order then in reverse (none exec worker, worker exec none, …), so that a drift of the machine's
# load falls on all of them alike; a configuration's figures are over all its rounds. Printed per configuration
# and number of containers: p50, p90 and max of the latency (nearest rank), the per-container cost over none
# ((p50 − p50 of none) / containers), the agent's own CPU over the measured requests divided by their number (its
# threads, the module's included, the 0.6 s gaps too) and the usage commands' (the module's cpu_seconds), and the
# module's own usage latency p50 (its latency_ms timer: per event, waiting for a slot or the worker included).
#
# Environment: MCM_BENCH_CONTAINERS (default "40 100", ascending), MCM_BENCH_REQUESTS (measured requests per
# configuration and round, default 30), MCM_BENCH_ROUNDS (default 2), MCM_BENCH_CONFIGS (default "none exec
# worker"), MCM_IT_MASTER_PORT / MCM_IT_AGENT_PORT (default 15070/15071), MCM_IT_KEEP=1 keeps the work directory.
# Needs curl, jq and /usr/bin/python3; as root (the tasks run as the agent's user). Without MESOS_BUILD_DIR or
# MCM_IT_MODULE it says SKIPPED and exits 0; it exits 1 if a step failed (a container missing from a response, an
# agent that did not come back).
set -uo pipefail

if [ -z "${MESOS_BUILD_DIR:-}" ] || [ -z "${MCM_IT_MODULE:-}" ]; then
  echo "SKIPPED: set MESOS_BUILD_DIR (a Mesos build tree) and MCM_IT_MODULE (the module's .so)"
  exit 0
fi
for tool in curl jq /usr/bin/python3; do
  command -v "$tool" > /dev/null || { echo "$tool is needed"; exit 1; }
done
counts=(${MCM_BENCH_CONTAINERS:-40 100})
configs=(${MCM_BENCH_CONFIGS:-none exec worker})
requests=${MCM_BENCH_REQUESTS:-30}
rounds=${MCM_BENCH_ROUNDS:-2}
warmup=5
# The agent serves /monitor/statistics at most twice a second (a rate limiter in Mesos' resource monitor): a request
# sent sooner waits for its turn, and back-to-back requests measure that limiter (~470 ms each here, whatever the
# containers). Each request starts at least this long after the previous one ended.
spacing=0.6
export MCM_IT_MASTER_PORT=${MCM_IT_MASTER_PORT:-15070} MCM_IT_AGENT_PORT=${MCM_IT_AGENT_PORT:-15071}
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/agent-lib.sh"
module_name=stats_bench
python=/usr/bin/python3
started=$SECONDS
mkdir -p "$work/scripts" "$work/times"

# The usage commands: the same numbers from each. The Python one serves both modes through the helper.
cat > "$work/scripts/usage.sh" <<'SCRIPT'
#!/bin/sh
printf '{"net_rx_bytes":1234,"net_tx_bytes":5678}' > "$2"
SCRIPT
cp "$repo/examples/lib/mesos_command_modules.py" "$work/scripts/"
cat > "$work/scripts/usage.py" <<SCRIPT
#!$python
import mesos_command_modules as mcm


def usage(envelope, event):
    return {"net_rx_bytes": 1234, "net_tx_bytes": 5678}


mcm.serve(usage)
SCRIPT
chmod 0755 "$work/scripts/usage.sh" "$work/scripts/usage.py"

manifest() {  # manifest CONFIG: the modules.json of that configuration
  local usage=''
  case $1 in
    none) ;;
    exec) usage=', {"key": "isolator_usage_command", "value": "'$work/scripts/usage.sh'"}' ;;
    worker) usage=', {"key": "isolator_usage_command", "value": "'$work/scripts/usage.py'"}, {"key": "isolator_usage_mode", "value": "worker"}' ;;
    exec-python) usage=', {"key": "isolator_usage_command", "value": "'$work/scripts/usage.py'"}' ;;
    *) echo "unknown configuration $1 (none, exec, worker, exec-python)" >&2; return 1 ;;
  esac
  cat > "$work/modules-$1.json" <<JSON
{"libraries": [{"file": "$MCM_IT_MODULE", "modules": [{"name": "com_criteo_mesos_CommandIsolator", "parameters": [
  {"key": "module_name", "value": "$module_name"},
  {"key": "state_dir", "value": "$work/state"},
  {"key": "temp_dir", "value": "$work/tmp"}$usage]}]}]}
JSON
}
for config in "${configs[@]}"; do manifest "$config" || exit 1; done

# The framework: launches COUNT checkpointed tasks (10 per offer), acknowledges their updates, writes READY once
# all of them run, and stays subscribed until SIGTERM (then tears itself down).
cat > "$work/framework.py" <<'PYTHON'
import http.client, json, os, pwd, signal, sys

address, name, count, command, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
host, port = address.split(":")
CPUS, MEM, PER_OFFER = 0.01, 16, 10
stream, framework_id, launched, states = None, None, 0, {}


def log(message):
    sys.stderr.write("framework %s: %s\n" % (name, message))
    sys.stderr.flush()


def call(kind, **body):
    body["type"] = kind
    body["framework_id"] = {"value": framework_id}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/api/v1/scheduler", json.dumps(body),
                       {"Content-Type": "application/json", "Mesos-Stream-Id": stream})
    response = connection.getresponse()
    text = response.read()
    connection.close()
    if response.status not in (200, 202):
        log("%s: HTTP %d %s" % (kind, response.status, text[:200]))


def teardown(signum, frame):
    if framework_id is not None:
        call("TEARDOWN")
    os._exit(0)


def scalar(resources, key):
    return sum(r.get("scalar", {}).get("value", 0) for r in resources if r["name"] == key)


def task(agent_id, index):
    task_id = "%s-%d" % (name, index)
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": agent_id, "command": {"value": command},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": CPUS}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": MEM}}]}


signal.signal(signal.SIGTERM, teardown)
connection = http.client.HTTPConnection(host, int(port))
connection.request("POST", "/api/v1/scheduler", json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
    "user": pwd.getpwuid(os.getuid()).pw_name, "name": name, "hostname": "127.0.0.1", "checkpoint": True,
    "failover_timeout": 86400}}}), {"Content-Type": "application/json", "Accept": "application/json"})
response = connection.getresponse()
if response.status != 200:
    log("SUBSCRIBE: HTTP %d %s" % (response.status, response.read()[:200]))
    sys.exit(2)
stream = response.getheader("Mesos-Stream-Id")
while True:  # RecordIO: "<length>\n<JSON event>"
    length = b""
    while not length.endswith(b"\n"):
        byte = response.read(1)
        if not byte:
            log("the master closed the subscription")
            sys.exit(3)
        length += byte
    event = json.loads(response.read(int(length)))
    kind = event["type"]
    if kind == "SUBSCRIBED":
        framework_id = event["subscribed"]["framework_id"]["value"]
    elif kind == "OFFERS":
        for offer in event["offers"]["offers"]:
            cpus, mem = scalar(offer["resources"], "cpus"), scalar(offer["resources"], "mem")
            tasks = []
            while launched < count and len(tasks) < PER_OFFER and cpus >= CPUS - 1e-9 and mem >= MEM:
                tasks.append(task(offer["agent_id"], launched))
                launched, cpus, mem = launched + 1, cpus - CPUS, mem - MEM
            if tasks:
                call("ACCEPT", accept={"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0.5},
                                       "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}]})
            else:
                call("DECLINE", decline={"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 86400}})
        if launched >= count:
            call("SUPPRESS")
    elif kind == "UPDATE":
        status = event["update"]["status"]
        states[status["task_id"]["value"]] = status["state"]
        if status["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            log("task %s: %s %s" % (status["task_id"]["value"], status["state"], status.get("message", "")))
        if "uuid" in status:
            call("ACKNOWLEDGE", acknowledge={"agent_id": status["agent_id"], "task_id": status["task_id"],
                                             "uuid": status["uuid"]})
        running = sum(1 for state in states.values() if state == "TASK_RUNNING")
        if running == count and not os.path.exists(ready):
            with open(ready, "w") as f:
                f.write("%d running\n" % running)
    elif kind == "ERROR":
        log("error: %s" % event.get("error", {}).get("message"))
        sys.exit(4)
PYTHON

start_bench_agent() {  # start_bench_agent CONFIG: agent-lib's start_agent, with room for 100 tasks and that manifest
  agent_starts=$((agent_starts + 1))
  agent_log=$work/agent-$agent_starts-$1.log
  "$MESOS_BUILD_DIR/bin/mesos-agent.sh" --master="$master" --ip=127.0.0.1 --port="$agent_port" \
    --work_dir="$work/agent" --runtime_dir="$work/runtime" --launcher=posix --no-systemd_enable_support \
    --resources="cpus:4;mem:4096;disk:1024;ports:[31100-31200]" --recover=reconnect \
    --executor_registration_timeout=5mins --executor_reregistration_timeout=15secs \
    --modules="file://$work/modules-$1.json" \
    --isolation=filesystem/posix,posix/cpu,posix/mem,com_criteo_mesos_CommandIsolator > "$agent_log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
  wait_for 180 registered_or_gone && grep -qi "registered with master" "$agent_log" || { tail -n 3 "$agent_log"; return 1; }
}
registered_or_gone() { grep -qi "registered with master" "$agent_log" || ! kill -0 "$agent_pid" 2> /dev/null; }
statistics_fit() {  # statistics_fit FILE COUNT CONFIG: every container listed, with the usage's numbers or without
  jq -e --argjson n "$2" --arg config "$3" 'length == $n and
    if $config == "none" then all(.[]; .statistics.net_rx_bytes == null)
    else all(.[]; .statistics.net_rx_bytes == 1234 and .statistics.net_tx_bytes == 5678) end' "$1" > /dev/null
}
statistics_ready() {  # statistics_ready COUNT CONFIG
  curl -sf --max-time 60 -o "$work/ready.json" "http://$agent/monitor/statistics" && statistics_fit "$work/ready.json" "$@"
}
agent_cpu_ticks() {  # the agent's own CPU (user + system, all its threads), in clock ticks
  local pid=$agent_pid
  # mesos-agent.sh execs the binary; were it a parent instead, take its mesos-agent child.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mesos-agent ] || pid=$(pgrep -P "$agent_pid" -x mesos-agent | head -n 1)
  awk '{print $14 + $15}' "/proc/$pid/stat"
}
metric() {  # metric FILE NAME: a value of a /metrics/snapshot, 0 if absent
  jq -r --arg key "command_modules/$module_name/isolator_usage/$2" '.[$key] // 0' "$1"
}

ticks=$(getconf CLK_TCK)
bad=0
echo "# Mesos: $("$MESOS_BUILD_DIR/bin/mesos-agent.sh" --version 2>/dev/null | head -n 1); module $MCM_IT_MODULE"
echo "# checkout: $(git -C "$repo" log -1 --format='%h %cd' --date=short 2>/dev/null)"
echo "# host: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# containers: ${counts[*]}; configurations: ${configs[*]}; $rounds round(s) of $requests measured requests (after $warmup of warm-up)"
check "the master starts" start_master
check "the agent starts (${configs[0]})" start_bench_agent "${configs[0]}"
[ "$failed" -eq 0 ] || { tail -n 20 "$agent_log"; exit 1; }
grep -o "parameter 'containment': .*" "$agent_log" | head -n 1 | sed 's/^/# /'
# The module's cgroups (containment=auto), empty once the agents are gone: removed at exit.
cgroup2=
for mount in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  if [ "$(stat -fc %T "$mount" 2>/dev/null)" = cgroup2fs ]; then cgroup2=$mount; break; fi
done
agent_cgroup=$(sed -n 's/^0:://p' "/proc/$agent_pid/cgroup")
cgroup_base=$cgroup2${agent_cgroup%/}/mesos-command-modules
remove_cgroups() {
  local i
  [ -n "$cgroup2" ] && [ -d "$cgroup_base" ] || return 0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    find "$cgroup_base" -depth -type d -path "$cgroup_base/$module_name.*" -exec rmdir {} + 2> /dev/null
    [ -z "$(ls -d "$cgroup_base/$module_name".* 2> /dev/null)" ] && break
    sleep 0.5
  done
  rmdir "$cgroup_base" 2> /dev/null
}
at_exit+=(remove_cgroups)
current=${configs[0]}

measure() {  # measure COUNT CONFIG ROUND: restart the agent with CONFIG, then time the requests
  local count=$1 config=$2 round=$3 i t cpu0 cpu1 step=$SECONDS
  stop_agent
  if ! start_bench_agent "$config" || ! wait_for 180 statistics_ready "$count" "$config"; then
    echo "not ok - $count containers, $config: the agent came back with every container ($(jq length "$work/ready.json" 2>/dev/null) listed)"
    tail -n 5 "$agent_log" | sed 's/^/    /'
    bad=$((bad + 1))
    return 1
  fi
  current=$config
  local restarted=$((SECONDS - step))
  for i in $(seq "$warmup"); do sleep "$spacing"; curl -sf --max-time 60 -o /dev/null "http://$agent/monitor/statistics"; done
  curl -sf --max-time 60 -o "$work/metrics-0.json" "http://$agent/metrics/snapshot"
  cpu0=$(agent_cpu_ticks)
  : > "$work/times/$count-$config-$round"
  for i in $(seq "$requests"); do
    sleep "$spacing"
    t=$(curl -sf --max-time 60 -o "$work/response.json" -w '%{time_total}' "http://$agent/monitor/statistics") \
      && statistics_fit "$work/response.json" "$count" "$config" \
      || { echo "not ok - $count containers, $config, request $i: $(head -c 300 "$work/response.json")"; bad=$((bad + 1)); }
    echo "$t" >> "$work/times/$count-$config-$round"
  done
  cpu1=$(agent_cpu_ticks)
  curl -sf --max-time 60 -o "$work/metrics-1.json" "http://$agent/metrics/snapshot"
  # One line per step: what its rounds' figures are made of.
  "$python" - "$work/times/$count-$config-$round" "$count" "$config" "$round" "$restarted" "$requests" \
    "$(( (cpu1 - cpu0) * 1000 / ticks ))" \
    "$(metric "$work/metrics-0.json" calls)" "$(metric "$work/metrics-1.json" calls)" \
    "$(metric "$work/metrics-0.json" cpu_seconds)" "$(metric "$work/metrics-1.json" cpu_seconds)" \
    "$(metric "$work/metrics-1.json" latency_ms/p50)" >> "$work/steps" <<'PYTHON'
import json, sys
times = sorted(float(t) for t in open(sys.argv[1]) if t.strip())
count, config, round_, restarted, n, cpu_ms = sys.argv[2:8]
calls0, calls1, cpus0, cpus1, latency = map(float, sys.argv[8:13])
print(json.dumps({"count": int(count), "config": config, "round": int(round_), "restarted_s": int(restarted),
                  "p50_ms": times[(len(times) + 1) // 2 - 1] * 1000, "agent_cpu_ms": int(cpu_ms) / int(n),
                  "calls": (calls1 - calls0) / int(n), "usage_cpu_ms": (cpus1 - cpus0) * 1000 / int(n),
                  "usage_latency_p50_ms": latency}))
PYTHON
  tail -n 1 "$work/steps" | jq -r '"# \(.count) containers, \(.config), round \(.round): p50 \(.p50_ms * 10 | round / 10) ms, agent CPU \(.agent_cpu_ms * 10 | round / 10) ms/request, usage calls/request \(.calls), usage commands CPU \(.usage_cpu_ms * 10 | round / 10) ms/request, module usage latency p50 \(.usage_latency_p50_ms * 100 | round / 100) ms (agent back in \(.restarted_s) s)"'
}

launched=0
for count in "${counts[@]}"; do
  if [ "$count" -gt "$launched" ]; then
    "$python" "$work/framework.py" "$master" "bench$count" $((count - launched)) "sleep 7200" "$work/ready-$count" \
      2>> "$work/framework.log" &
    pids+=($!)
    step=$SECONDS
    all_running() { [ -e "$work/ready-$count" ] && statistics_ready "$count" "$current"; }
    check "$((count - launched)) more tasks run: $count containers" wait_for 600 all_running
    [ "$failed" -eq 0 ] || { tail -n 20 "$work/framework.log"; jq length "$work/ready.json"; exit 1; }
    echo "# $((count - launched)) tasks launched and running in $((SECONDS - step)) s"
    launched=$count
  fi
  for round in $(seq "$rounds"); do
    order=("${configs[@]}")
    if [ $((round % 2)) -eq 0 ]; then
      order=()
      for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[i]}"); done
    fi
    for config in "${order[@]}"; do measure "$count" "$config" "$round"; done
  done
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg); the whole run took $((SECONDS - started)) s"

echo
"$python" - "$work/times" "$work/steps" "${configs[*]}" "${counts[*]}" <<'PYTHON'
import glob, json, os, sys
times_dir, steps_file, configs, counts = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
steps = [json.loads(line) for line in open(steps_file)] if os.path.exists(steps_file) else []


def rank(values, p):  # nearest rank
    return values[max(0, -(-len(values) * p // 100) - 1)]


def mean(key, count, config):
    values = [s[key] for s in steps if s["count"] == count and s["config"] == config]
    return sum(values) / len(values) if values else float("nan")


print("| containers | usage | requests | p50 ms | p90 ms | max ms | per container over none (p50) | agent CPU ms/request "
      "| usage commands' CPU ms/request | module usage p50 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for count in map(int, counts):
    p50 = {}
    for config in configs:
        values = sorted(float(t) * 1000 for f in glob.glob("%s/%d-%s-*" % (times_dir, count, config))
                        for t in open(f) if t.strip())
        if not values:
            continue
        p50[config] = rank(values, 50)
        over = "—" if config == "none" or "none" not in p50 else "%.2f ms" % ((p50[config] - p50["none"]) / count)
        usage = "—" if config == "none" else "%.2f" % mean("usage_cpu_ms", count, config)
        latency = "—" if config == "none" else "%.2f" % mean("usage_latency_p50_ms", count, config)
        print("| %d | %s | %d | %.1f | %.1f | %.1f | %s | %.1f | %s | %s |" % (
            count, config, len(values), p50[config], rank(values, 90), values[-1], over,
            mean("agent_cpu_ms", count, config), usage, latency))
PYTHON
[ "$bad" -eq 0 ] && [ "$failed" -eq 0 ]
