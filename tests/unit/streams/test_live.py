from streams.live import LiveThrottle


def test_first_update_goes_out_then_latest_wins_within_interval() -> None:
    t: LiveThrottle[str] = LiveThrottle(1.0)
    assert t.offer("vm", "a", now=10.0) == "a"
    assert t.offer("vm", "b", now=10.2) is None
    assert t.offer("vm", "c", now=10.5) is None
    assert t.due(10.9) == []
    assert t.due(11.0) == [("vm", "c")]
    assert t.due(11.5) == []


def test_vms_are_throttled_independently() -> None:
    t: LiveThrottle[int] = LiveThrottle(1.0)
    assert t.offer("a", 1, now=0.0) == 1
    assert t.offer("b", 2, now=0.1) == 2
    assert t.offer("a", 3, now=0.2) is None
    assert t.offer("a", 4, now=1.3) == 4
    assert t.due(5.0) == []


def test_zero_interval_passes_everything() -> None:
    t: LiveThrottle[int] = LiveThrottle(0.0)
    assert [t.offer("a", i, now=1.0) for i in range(3)] == [0, 1, 2]
