#!/usr/bin/env python3
"""A small Mesos framework for Tests/MesosAgent/cluster.sh, on pymesos (the v1 scheduler API, the leading master
found through ZooKeeper): it launches command tasks and writes what happened to them as JSON.

    cluster_framework.py --master zk://127.0.0.1:12181/mesos --name NAME [--prefix P] --tasks N [--warmup W]
                         [--in-flight K] [--interval S] [--stop-file F] [--deadline S] --output FILE

First W warm-up tasks (launched at once, waited for), then the N measured ones: as many per offer as it holds
(with --in-flight, while fewer than K are launched and not reached: a framework that keeps K launches going), or
one every S seconds with --interval; none once the file F exists. A task is "reached" at its first status past
staging (TASK_STARTING, TASK_RUNNING or a terminal one). The output: per task its launch and reached times
(seconds since the epoch), its states and agent; for the measured tasks the launch rate, reached tasks per second
from the first measured launch to the last reached task (or to the deadline, if some never reached it). Exits 0
once every task is terminal, 3 at the deadline (--deadline seconds after the first measured launch; a minute for
the warm-up), 2 if it cannot subscribe.
"""
import argparse
import json
import logging
import os
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE",
            "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE"}
REACHED = TERMINAL | {"TASK_STARTING", "TASK_RUNNING"}
CPUS, MEM = 0.1, 32


def scalar(resources, name):
    return sum(r.scalar.value for r in resources if r.name == name and r.type == "SCALAR")


class Launcher(Scheduler):
    def __init__(self, args):
        self.args = args
        self.lock = threading.Condition()
        self.tasks = {}  # id -> record
        prefix = args.prefix or args.name
        self.queue = ["%s-w%d" % (prefix, i) for i in range(args.warmup)]
        self.measured = ["%s-%d" % (prefix, i) for i in range(args.tasks)]
        self.phase = "warmup" if args.warmup else "measured"
        if not args.warmup:
            self.queue = list(self.measured)
        self.measure_start = None
        self.last_launch = 0.0
        self.subscribed = None
        self.framework_id = None

    # pymesos callbacks (its thread)
    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.subscribed = time.time()
            self.framework_id = framework_id.value
            self.lock.notify_all()

    def reregistered(self, driver, master_info):
        pass

    def resourceOffers(self, driver, offers):
        with self.lock:
            if self.args.stop_file and self.phase == "measured" and os.path.exists(self.args.stop_file):
                self.queue = []
            for offer in offers:
                cpus, mem = scalar(offer.resources, "cpus"), scalar(offer.resources, "mem")
                tasks = []
                now = time.time()
                in_flight = sum(1 for r in self.tasks.values() if r["reached"] is None)
                while self.queue and cpus >= CPUS - 1e-9 and mem >= MEM:
                    if self.args.in_flight and in_flight + len(tasks) >= self.args.in_flight:
                        break
                    if self.args.interval and self.phase == "measured":
                        if tasks or now - self.last_launch < self.args.interval:
                            break
                    task_id = self.queue.pop(0)
                    cpus -= CPUS
                    mem -= MEM
                    tasks.append({
                        "task_id": {"value": task_id}, "agent_id": {"value": offer.agent_id.value}, "name": task_id,
                        "resources": [
                            {"name": "cpus", "type": "SCALAR", "scalar": {"value": CPUS}},
                            {"name": "mem", "type": "SCALAR", "scalar": {"value": MEM}}],
                        "command": {"value": self.args.command}})
                    self.tasks[task_id] = {"id": task_id, "agent_id": offer.agent_id.value, "launched": now,
                                           "reached": None, "states": [], "phase": self.phase}
                if tasks:
                    if self.phase == "measured" and self.measure_start is None:
                        self.measure_start = now
                    self.last_launch = now
                    driver.launchTasks(offer.id, tasks, {"refuse_seconds": 0.01})
                else:
                    driver.declineOffer(offer.id, {"refuse_seconds": 0.01})

    def statusUpdate(self, driver, update):
        with self.lock:
            record = self.tasks.get(update.task_id.value)
            if record is None:
                return
            record["states"].append(update.state)
            if record["reached"] is None and update.state in REACHED:
                record["reached"] = time.time()
            if record["phase"] == "warmup" and self.phase == "warmup" and all(
                    r["reached"] is not None for r in self.tasks.values()) and len(self.tasks) == self.args.warmup:
                self.phase = "measured"
                self.queue = list(self.measured)
            self.lock.notify_all()

    def error(self, driver, message):
        logging.error("framework error: %s", message)

    # main thread
    def done(self):
        if self.args.stop_file and os.path.exists(self.args.stop_file):
            self.queue = []
        return self.phase == "measured" and not self.queue and all(
            any(s in TERMINAL for s in r["states"]) for r in self.tasks.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--prefix", default="", help="of the task ids (default: the name)")
    parser.add_argument("--in-flight", type=int, default=0, help="at most that many tasks launched, not reached")
    parser.add_argument("--interval", type=float, default=0)
    parser.add_argument("--stop-file", default="", help="no more launches once this file exists")
    parser.add_argument("--deadline", type=float, default=120)
    parser.add_argument("--command", default="true")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    launcher = Launcher(args)
    framework = {"user": "root", "name": args.name, "hostname": "127.0.0.1", "failover_timeout": 0}
    driver = MesosSchedulerDriver(launcher, framework, args.master, use_addict=True)
    started = time.time()
    driver.start()
    status = 0
    with launcher.lock:
        if not launcher.lock.wait_for(lambda: launcher.subscribed is not None, timeout=60):
            status = 2
        else:
            # The deadline counts from the first measured launch; the warm-up has a minute.
            warmup_deadline = time.time() + 60
            while not launcher.done():
                start = launcher.measure_start
                left = (start + args.deadline if start is not None else warmup_deadline) - time.time()
                if left <= 0:
                    status = 3
                    break
                launcher.lock.wait(timeout=min(left, 0.5))
        report = summary(args, launcher, started, status)
    with open(args.output + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.rename(args.output + ".tmp", args.output)
    # A master stalled by a hook answers the teardown late: do not wait for it.
    stopper = threading.Thread(target=driver.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=5)
    sys.stdout.flush()
    os._exit(status)


def summary(args, launcher, started, status):
    tasks = sorted(launcher.tasks.values(), key=lambda r: r["launched"])
    measured = [r for r in tasks if r["phase"] == "measured"]
    reached = [r for r in measured if r["reached"] is not None]
    rate = None
    if launcher.measure_start is not None and reached:
        end = max(r["reached"] for r in reached)
        if len(reached) < args.tasks:
            end = time.time()
        span = max(end - launcher.measure_start, 1e-3)
        rate = len(reached) / span
    return {"name": args.name, "framework_id": launcher.framework_id, "status": status, "started": started,
            "subscribed": launcher.subscribed, "measure_start": launcher.measure_start,
            "measured": args.tasks, "measured_launched": len(measured), "measured_reached": len(reached),
            "rate": rate, "tasks": tasks}


if __name__ == "__main__":
    main()
