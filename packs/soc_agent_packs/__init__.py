"""The packs shipped with soc-agent (see "Packs" in the README); each is a directory with a
`pack.yaml`, registered under the `soc_agent.packs` entry point."""
