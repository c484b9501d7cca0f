"""Wire formats and event contracts of vmpulse: pure code, no I/O."""
