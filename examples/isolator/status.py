#!/usr/bin/env python3
"""status: input {container_id, container_config}. Output: mesos.ContainerStatus (None = empty status).

Serves both modes (examples/lib/mesos_command_modules.py): run it per event, or set isolator_status_mode=worker.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "lib"))
import mesos_command_modules as mcm  # noqa: E402


def status(envelope, event):
    return {"network_infos": [{"name": "example", "ip_addresses": [{"protocol": "IPv4", "ip_address": "10.1.2.3"}]}]}


mcm.serve(status)
