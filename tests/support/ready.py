"""Waiting for a gateway started as its own process to serve: one loop for every harness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

__all__ = ["wait_ready"]


async def wait_ready(
    url: str, within_s: float, *, alive: Callable[[], bool] = lambda: True
) -> None:
    """Poll ``<url>/readyz`` until it answers 200 (it listens, has read the directory and
    consumes); RuntimeError after ``within_s`` or once ``alive()`` says the process ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline or not alive():
                raise RuntimeError(f"the gateway at {url} did not become ready")
            await asyncio.sleep(0.2)
