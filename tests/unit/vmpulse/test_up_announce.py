"""What `vmpulse up` prints for the dashboard: its URL, and sign-in links only with the dev key."""

from __future__ import annotations

import jwt

from infra.config import DEV_JWT_SECRET, Secret, Settings, TokenSettings
from vmpulse.demo import demo_user_ids
from vmpulse.up import Announcer


class _Gateway:
    url = "http://127.0.0.1:8080"


def test_dev_key_prints_a_link_per_demo_user_with_that_users_token() -> None:
    text = Announcer(Settings(), _Gateway(), demo_user_ids()).sign_in_text()  # type: ignore[arg-type]
    lines = text.splitlines()
    assert lines[0] == "dashboard: http://127.0.0.1:8080/"
    assert len(lines) == 1 + len(demo_user_ids())
    for user, line in zip(demo_user_ids(), lines[1:], strict=True):
        link = line.split()[-1]
        assert link.startswith("http://127.0.0.1:8080/#token=")
        claims = jwt.decode(link.split("#token=")[1], DEV_JWT_SECRET, algorithms=["HS256"])
        assert claims["sub"] == user


def test_a_real_key_prints_no_token() -> None:
    settings = Settings(
        tokens=TokenSettings(secret=Secret("a-real-secret-of-more-than-32-bytes!!"))
    )
    text = Announcer(settings, _Gateway(), demo_user_ids()).sign_in_text()  # type: ignore[arg-type]
    assert "#token=" not in text
    assert text.startswith("dashboard: http://127.0.0.1:8080/")
