"""Runtimes: the embedded runner (and, later, the Kafka worker) driving the core."""
