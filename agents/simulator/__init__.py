"""The agent fleet simulator: fake guests served the way QEMU serves virtio-serial ports.

``fleet`` is the fleet (unix sockets or TCP) and the dialect 1 line generator,
``dialect2_lines`` the lines of the dialect 2 agent, ``runner`` the ``vmpulse
simulate`` loop. Nothing here talks to Kafka: the fleet is the guests' side.
"""
