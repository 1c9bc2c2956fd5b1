"""Text mode renders each message once: a prompt built from the cache equals a fresh render,
whether the history only grew (O(1) check), was replaced (compaction) or handed as a copy."""

from __future__ import annotations

from looplet.backends.text import _RenderCache, render_message
from looplet.history import History, Message


def fresh(messages: list[Message]) -> list[str]:
    return [render_message(m) for m in messages]


def test_a_growing_history_renders_only_the_new_messages_and_matches_a_fresh_render() -> None:
    history = History([Message("user", "task")])
    cache = _RenderCache()
    rendered_before = cache.render(history.messages)
    assert rendered_before == fresh(list(history))
    for i in range(5):
        history.append(Message("assistant", f"reply {i}"))
        history.append(Message("tool", f"result {i}", call_id=f"c{i}", name="t"))
        kept = cache._messages[:]
        texts = cache.render(history.messages)
        assert texts == fresh(list(history))
        assert all(a is b for a, b in zip(kept, cache._messages, strict=False)), "old renders kept"


def test_a_replaced_history_is_rendered_from_its_own_messages() -> None:
    history = History([Message("user", "task"), Message("assistant", "a"), Message("tool", "r", "x")])
    cache = _RenderCache()
    cache.render(history.messages)
    history.replace([Message("user", "task"), Message("user", "summary of what happened")])
    assert cache.render(history.messages) == fresh(list(history))
    history.append(Message("assistant", "next"))
    assert cache.render(history.messages) == fresh(list(history))


def test_a_hooks_own_list_and_a_shorter_view_are_rendered_exactly() -> None:
    history = History([Message("user", "task"), Message("assistant", "a")])
    cache = _RenderCache()
    cache.render(history.messages)
    own = [Message("user", "scrubbed task"), Message("assistant", "a")]
    assert cache.render(own) == fresh(own)
    view = history.messages
    history.append(Message("assistant", "b"))
    assert cache.render(history.messages) == fresh(list(history))
    assert cache.render(view) == fresh(list(view)), "an older, shorter view of the same list"
