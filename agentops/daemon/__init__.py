"""`agentops daemon`: watches the workspace and routes mail, ingests Orbit drop files and re-checks
changed specs, through pluggable tasks (`agentops.daemon.tasks`)."""

from agentops.daemon.core import Daemon
from agentops.daemon.heartbeat import read_state, state_path
from agentops.daemon.tasks import DaemonTask, InactiveTask, Task, register_task

__all__ = ["Daemon", "DaemonTask", "InactiveTask", "Task", "read_state", "register_task", "state_path"]
