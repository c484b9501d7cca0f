"""The shared plumbing below the stages, and the local services and deployment tooling.

Every stage (agents/, streams/, gateway/) and the application (vmpulse/)
stand on it; it stands only on schemas/ and never imports a stage:

- ``config``: the settings, the one place that reads the environment;
- ``kafka_io``: topics, producers, the directory tail;
- ``dlq_reader``: the latest records of agent.dlq, read without a group;
- ``tasks``: cancelling a task and waiting for it;
- ``log_budget``: a bounded number of warnings per kind;
- ``network``: the loopback check for development keys;
- ``broker``: the single-node Kafka broker of tests, CI and `vmpulse up`;
- the container image, compose file and deployment notes.
"""
