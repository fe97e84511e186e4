"""The live feed behind the console's stream: numbered changes, resuming, slow clients."""

from __future__ import annotations

from gateway.console import LiveFeed


def _publish(feed: LiveFeed, n: int, org: str = "vallby") -> list[str]:
    return [feed.publish(org, {"type": "alert", "n": i}).event_id for i in range(n)]


def test_ids_carry_the_epoch_and_count_up() -> None:
    feed = LiveFeed()
    assert feed.last_id == f"{feed.epoch}-0"
    ids = _publish(feed, 3)
    assert ids == [f"{feed.epoch}-{n}" for n in (1, 2, 3)]
    assert feed.last_id == ids[-1]
    assert LiveFeed().epoch != feed.epoch  # a restart is told apart


def test_since_gives_exactly_what_came_after_in_order() -> None:
    feed = LiveFeed()
    ids = _publish(feed, 5)
    missed = feed.since(ids[1])
    assert missed is not None
    assert [item.event_id for item in missed] == ids[2:]
    assert [item.data["n"] for item in missed] == [2, 3, 4]
    assert feed.since(ids[-1]) == []  # up to date: nothing, but not unknown
    assert [i.event_id for i in feed.since(f"{feed.epoch}-0") or []] == ids


def test_an_unknown_position_is_none_so_the_client_gets_a_snapshot() -> None:
    feed = LiveFeed()
    _publish(feed, 3)
    assert feed.since("0badbeef-1") is None  # another epoch: from before a restart
    assert feed.since(f"{feed.epoch}-4") is None  # ahead of the feed
    assert feed.since(f"{feed.epoch}-x") is None
    assert feed.since(f"{feed.epoch}--1") is None
    assert feed.since("") is None


def test_a_client_whose_missed_changes_left_the_ring_gets_none() -> None:
    feed = LiveFeed(capacity=3)
    ids = _publish(feed, 6)  # the ring holds 4, 5, 6
    assert feed.since(ids[1]) is None  # it missed 3, which is gone
    kept = feed.since(ids[2])  # it missed 4, 5, 6: all still held
    assert kept is not None
    assert [item.event_id for item in kept] == ids[3:]


def test_subscribers_get_every_change_from_subscribing_on() -> None:
    feed = LiveFeed()
    _publish(feed, 2)
    with feed.subscribe() as queue:
        ids = _publish(feed, 3, org="norrby")
        got = [queue.get_nowait() for _ in range(3)]
        assert [item.event_id if item else None for item in got] == ids
        assert {item.org for item in got if item} == {"norrby"}
        assert queue.empty()
    _publish(feed, 1)
    assert queue.empty()  # unsubscribed on leaving the block


def test_a_subscriber_too_slow_to_follow_is_cut_off_with_none() -> None:
    feed = LiveFeed()
    with feed.subscribe() as slow, feed.subscribe() as fast:
        capacity = slow.maxsize
        for n in range(capacity + 1):
            feed.publish("vallby", {"n": n})
            fast.get_nowait()
        # Its queue ends with the end-of-stream marker; it resumes from the ring by id.
        items = [slow.get_nowait() for _ in range(slow.qsize())]
        assert items[-1] is None
        assert all(item is not None for item in items[:-1])
        feed.publish("vallby", {"n": "later"})
        assert slow.empty()  # no longer fed
        later = fast.get_nowait()
        assert later is not None
        assert later.data == {"n": "later"}
