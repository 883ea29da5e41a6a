"""Connectors: the agent's hands and eyes. Installed as `soc_agent_connectors`."""
