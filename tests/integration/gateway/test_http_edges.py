"""No request makes a 500: hostile parameters, and the running gateway fuzzed against its document.

The named cases of issue 10 (unicode digits, 5,000-digit numbers, negative,
NaN, empty, repeated) are sent one by one and must each get a 400 with a
message. Then the gateway runs here on the real broker with the chDB store behind its
history and query endpoints; schemathesis runs as a user would run it (its
CLI, in a child process) against ``/openapi.json`` with an admin's token, so
every operation is reachable. It must find no 5xx and no answer that the
document does not describe (status, content type, headers, body schema), and
every request that breaks the document (negative data) must be refused with a
4xx. Bounded: a fixed seed, a few examples per operation and a time budget.

``positive_data_acceptance`` is left out on purpose: some rules cannot be said
in JSON Schema (``from`` before ``to``, a calendar date that exists, a VM
that exists), so documented-valid input can rightly get a 400 or 404.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.openapi import render
from infra.config import Settings
from schemas.directory import Vm
from schemas.topics import Topics
from store.reader import Reader
from tests.integration.gateway.harness import DIRECTORY, put_directory, running, token

pytestmark = pytest.mark.integration

EXAMPLE_VM = "3f1c2a9e-8d4b-4c1e-9a57-0b6f2d1e7c42"  # the document's example VM id
MAX_EXAMPLES = 20
BUDGET_S = 30
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    )
)


HOSTILE = {
    "count": ["²", "١٢", "9" * 5000, "-1", "0", "NaN", "", "1e3", " 1", "0x1", "10001"],
    "step": ["²", "9" * 5000, "-60", "0", "NaN", "", "1.5", "inf"],
    "from": ["", "²", "9" * 5000, "-1", "NaN", "x" * 65, "0001-01-01T00:00:00+23:59", "é"],
    "to": ["", "١٧٦٧٢٢٥٦٠٠", "nan", "9999-12-31T23:59:59-23:59", "\u0000"],
}


async def test_every_hostile_parameter_gets_a_400_with_a_message(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader
) -> None:
    await put_directory(settings, *DIRECTORY)
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    base = "/api/vms/vm-a/metrics"
    async with running(settings, reader=chdb_reader) as gw, aiohttp.ClientSession() as http:

        async def status_of(path: str, params: list[tuple[str, str]]) -> tuple[int, Any]:
            async with http.get(f"{gw.url}{path}", params=params, headers=headers) as resp:
                assert resp.content_type == "application/json", await resp.text()
                return resp.status, await resp.json()

        for name, values in HOSTILE.items():
            path = f"{base}/recent" if name == "count" else base
            for value in values:
                status, body = await status_of(path, [(name, value)])
                assert status == 400, (name, value, body)
                # The message names the parameter, or says the value is no time.
                assert f"'{name}'" in body["error"] or "time" in body["error"], body
            status, body = await status_of(path, [(name, "1"), (name, "1")])
            assert (status, body) == (400, {"error": f"'{name}' given more than once"})
        # The good values still work.
        assert (await status_of(f"{base}/recent", [("count", "5")]))[0] == 200
        assert (await status_of(base, [("step", "60")]))[0] == 200
        # aiohttp's own refusals under /api/ are in the API's shape too.
        async with http.delete(f"{gw.url}/api/vms", headers=headers) as resp:
            assert resp.status == 405 and "GET" in resp.headers["Allow"]
            assert await resp.json() == {"error": "Method Not Allowed"}
        async with http.get(f"{gw.url}/api/nothing-here", headers=headers) as resp:
            assert (resp.status, await resp.json()) == (404, {"error": "Not Found"})
        admin = {"Authorization": f"Bearer {token(settings, 'root')}"}
        for body_bytes, content_type in (
            (b"\xff\xfe", "application/json"),
            (b'{"sql": "SELECT 1"}', "application/json; charset=no-such-charset"),
            (b"[]", "application/json"),
            (b'{"sql": 1}', "text/plain"),
        ):
            async with http.post(
                f"{gw.url}/api/query",
                data=body_bytes,
                headers={**admin, "Content-Type": content_type},
            ) as resp:
                text = await resp.text()
                assert resp.status in (200, 400), (body_bytes, content_type, text)


async def test_the_gateway_answers_every_request_as_its_document_says(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader, short_tmp: Path
) -> None:
    await put_directory(settings, *DIRECTORY, Vm(id=EXAMPLE_VM, name="example", owner="alice"))
    seed = int(os.environ.get("VMPULSE_FUZZ_SEED") or random.randrange(2**31))
    print(f"schemathesis seed {seed} (VMPULSE_FUZZ_SEED={seed} repeats this run)")
    async with running(settings, reader=chdb_reader) as gw:
        async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/openapi.json") as resp:
            assert resp.status == 200
            assert await resp.text() == render()  # what is served is what is checked in
        st = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{gw.url}/openapi.json",
            "--checks",
            CHECKS,
            "--header",
            f"Authorization: Bearer {token(settings, 'root')}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(BUDGET_S),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "35",  # above the gateway's own 30 s query timeout, which answers 504
            "--suppress-health-check",
            "all",
            "--no-color",
            cwd=short_tmp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(st.communicate(), BUDGET_S + 60)
    report = out.decode(errors="replace")
    print(report)
    assert st.returncode == 0, report[-6000:]
    assert "No issues found" in report or "passed" in report, report[-3000:]
