"""Local services and deployment tooling: the single-node Kafka broker used by tests and `vmpulse up`."""
