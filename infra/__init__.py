"""Local services and deployment tooling.

The single-node Kafka broker used by tests, CI and `vmpulse up`.
"""
