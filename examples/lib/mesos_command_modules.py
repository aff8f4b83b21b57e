"""One script, both modes of mesos-command-modules: exec (a process per event) and worker (one long-lived
process serving many events). Standard library only: copy this file next to your script, or put its directory
on PYTHONPATH.

    #!/usr/bin/env python3
    import mesos_command_modules as mcm

    def usage(envelope, event):
        # envelope: the event's input as a dict, e.g. {"container_id": {...}, "container_config": {...}}
        # event: its key, e.g. "isolator_usage" (None in exec mode under the C++ module)
        return {"cpus_limit": 1.0}      # the output; None for "no change"; raise to fail the event

    mcm.serve(usage)                    # or mcm.serve({"isolator_usage": usage, "isolator_status": status})

In exec mode (the default, `<event>_mode=exec`) the script is run as `script INPUT OUTPUT ERROR`: `serve` reads
INPUT, calls the function once, writes its result to OUTPUT; an exception's message goes to ERROR and the
script exits 1 — the module reports `Command "<path>" exited with return code 1. Cause: <message>`.

In worker mode (`<event>_mode=worker`) the module starts the script once, with
MESOS_COMMAND_MODULES_PROTOCOL=worker/1 in its environment, and writes one request per line on its stdin:
{"id": N, "event": "<event key>", "input": <envelope>}. `serve` answers each on stdout,
{"id": N, "output": <result or null>} or {"id": N, "error": "<message>"}, and returns when stdin ends (the
module is going away). What the function prints goes to stderr, hence to the agent's log: stdout carries the
protocol only.
"""

import json
import os
import sys

PROTOCOL = "worker/1"


def serve(handler):
    """Runs `handler` (a function, or a dict of event key -> function) for the event(s) of this process."""
    if os.environ.get("MESOS_COMMAND_MODULES_PROTOCOL") == PROTOCOL:
        _serve_worker(handler)
    else:
        sys.exit(_serve_once(handler))


def _call(handler, envelope, event):
    if isinstance(handler, dict):
        function = handler.get(event)
        if function is None:
            raise LookupError("no handler for event %r (this script handles %s)" % (event, ", ".join(sorted(handler))))
        return function(envelope, event)
    return handler(envelope, event)


def _serve_once(handler):
    if len(sys.argv) < 4:
        sys.stderr.write("usage: %s INPUT OUTPUT ERROR (or run as a worker, see mesos_command_modules.py)\n" % sys.argv[0])
        return 2
    input_file, output_file, error_file = sys.argv[1:4]
    try:
        with open(input_file) as f:
            envelope = json.load(f)
        result = _call(handler, envelope, os.environ.get("MESOS_COMMAND_MODULES_EVENT"))
    except Exception as error:  # the event fails with the message as its cause
        with open(error_file, "w") as f:
            f.write(str(error) or type(error).__name__)
        return 1
    if result is not None:
        with open(output_file, "w") as f:
            json.dump(result, f)
    return 0


def _serve_worker(handler):
    # The protocol owns stdout: keep it for the answers, and send anything else printed to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    for line in requests:
        try:
            request = json.loads(line)
            request_id = request["id"]
        except (ValueError, KeyError, TypeError) as error:
            sys.stderr.write("mesos_command_modules: not a request (%s): %r\n" % (error, line[:200]))
            continue
        try:
            answer = {"id": request_id, "output": _call(handler, request.get("input"), request.get("event"))}
        except Exception as error:
            answer = {"id": request_id, "error": str(error) or type(error).__name__}
        answers.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
        answers.flush()
