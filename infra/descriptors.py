"""The process's file descriptor limit, raised where a stage holds one per peer.

Every agent connection (the bridge), every browser (the gateway) and, in the
simulator, every VM's socket is a descriptor. Linux starts a process at the soft
``RLIMIT_NOFILE``, often 1,024 in a container or a login shell, though the hard
limit an administrator set is far higher; past the soft one each ``accept`` fails
(EMFILE) and its peer is turned away. So every vmpulse command raises the soft
limit to the hard one at start, as the JVM and Go's runtime do for their programs.
"""

from __future__ import annotations

import resource

__all__ = ["raise_descriptor_limit"]


def raise_descriptor_limit(wanted: int | None = None) -> int:
    """Raise the soft descriptor limit to ``wanted`` (None: as far as the hard limit
    allows); never lower it. Returns the soft limit now (``resource.RLIM_INFINITY``
    for no limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    beyond_hard = hard != resource.RLIM_INFINITY and wanted is not None and wanted > hard
    target = hard if wanted is None or beyond_hard else wanted
    if soft != resource.RLIM_INFINITY and (target == resource.RLIM_INFINITY or soft < target):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
