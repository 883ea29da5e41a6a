"""Real servers for the test suite, built from Maven Central artifacts.

`tests.infra.elasticsearch` and `tests.infra.kafka` resolve pinned artifacts
with Maven into a cache, lay out what each server needs, and start a
single-node server on free loopback ports. Each is also a command a
developer can run by hand: `python -m tests.infra.elasticsearch`.
"""
