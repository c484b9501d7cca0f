"""vmpulse: the command line, the settings and the one-process pipeline (`vmpulse up`)."""
