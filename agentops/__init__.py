"""agentops: a coordination runtime for teams of AI agents doing data engineering."""

from agentops.errors import AgentOpsError
from agentops.workspace import Workspace, find_workspace, init_workspace

__version__ = "0.1.0"
__all__ = ["AgentOpsError", "Workspace", "find_workspace", "init_workspace", "__version__"]
