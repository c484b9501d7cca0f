from streams.live import HEADROOM, LiveThrottle


def test_a_sample_a_second_with_jitter_is_never_held_back() -> None:
    # an agent reporting once a second, a few hundred ms early or late each time
    t: LiveThrottle[int] = LiveThrottle(1.0)
    arrivals = [0.0, 0.7, 2.0, 2.6, 3.9, 4.5, 5.8, 6.4, 7.6, 8.3, 9.7]
    assert [t.offer("vm", i, now=at) for i, at in enumerate(arrivals)] == list(range(11))
    assert t.pending == 0


def test_a_burst_is_merged_and_the_latest_goes_out_when_a_token_is_back() -> None:
    t: LiveThrottle[str] = LiveThrottle(1.0)
    # a replayed backlog: ten samples at once; the saved tokens let two through
    sent = [t.offer("vm", f"s{i}", now=10.0) for i in range(10)]
    assert sent[:2] == ["s0", "s1"] and sent[2:] == [None] * 8
    assert t.due(10.5) == []
    assert t.due(10.8) == [("vm", "s9")]  # the latest wins, a token (0.8 s) later
    assert t.due(11.5) == []


def test_a_flooding_vm_gets_about_one_update_per_interval() -> None:
    t: LiveThrottle[int] = LiveThrottle(1.0)
    now, sent = 0.0, 0
    for i in range(400):  # 4 samples a second for 100 s
        now = i * 0.25
        sent += t.offer("vm", i, now=now) is not None
        sent += len(t.due(now))
    assert 100 * HEADROOM <= sent <= 100 * HEADROOM + 2


def test_a_steady_agent_held_back_once_catches_up() -> None:
    # the worker starts on a backlog: 10 samples at once spend the tokens; then the
    # agent goes on once a second, each sample a hair (0.95 s) after its predecessor
    # would have found a token at exactly one token a second
    t: LiveThrottle[float] = LiveThrottle(1.0)
    for i in range(10):
        t.offer("vm", float(i), now=100.0)
    late: list[float] = []
    now, arrival = 100.0, 100.95
    while arrival < 130.0:
        while now < arrival:  # the app's 50 ms flush timer
            now = round(now + 0.05, 2)
            late += [now - at for _, at in t.due(now)]
        if t.offer("vm", arrival, now=arrival) is not None:
            late.append(0.0)
        arrival = round(arrival + 1.0, 2)
    assert len(late) >= 29  # nothing merged away: one update per sample
    assert late[8:] == [0.0] * len(late[8:])  # on time within a few samples, and it stays


def test_vms_are_throttled_independently() -> None:
    t: LiveThrottle[int] = LiveThrottle(1.0)
    assert [t.offer("a", i, now=0.0) for i in range(3)] == [0, 1, None]
    assert t.offer("b", 9, now=0.1) == 9
    assert t.due(0.2) == []
    assert t.due(1.0) == [("a", 2)]


def test_zero_interval_passes_everything() -> None:
    t: LiveThrottle[int] = LiveThrottle(0.0)
    assert [t.offer("a", i, now=1.0) for i in range(3)] == [0, 1, 2]
