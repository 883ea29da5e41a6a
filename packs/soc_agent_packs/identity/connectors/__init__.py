"""The identity pack's Python connectors, registered under `soc_agent.connectors`."""
