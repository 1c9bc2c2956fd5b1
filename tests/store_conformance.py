"""The contract every `RunStore` keeps, as a suite any store can run against itself (E11).

With pytest, subclass `RunStoreConformance` and say how to make a fresh, empty store::

    from store_conformance import RunStoreConformance

    class TestRedisRunStore(RunStoreConformance):
        def make_store(self, tmp_path):
            return RedisRunStore(url=..., prefix=str(tmp_path))  # a fresh namespace per test

Without pytest, ``check_store(make_store)`` runs every contract (a fresh store each)
and returns their names; a broken contract raises ``AssertionError`` naming it.

What is checked is what `CheckpointHook` and `load_run` rely on: a save replaces
the record and subsumes the journal, entries come back in order, an unknown run
is an error (never an empty record), data that JSON cannot hold is refused at
once, every failure is a `CheckpointError`, and a run's lock is exclusive
(in one process here; across processes is each store's own test).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from looplet.checkpoints import RunLock, RunStore
from looplet.errors import CheckpointError, CheckpointLocked

__all__ = ["CONTRACTS", "RunStoreConformance", "check_store"]

Contract = Callable[[RunStore], None]
CONTRACTS: list[Contract] = []


def _contract(fn: Contract) -> Contract:
    CONTRACTS.append(fn)
    return fn


def _record(run_id: str, **fields: Any) -> dict[str, Any]:
    """A record shaped like `state.to_dict()`'s, with the values JSON makes hard to keep."""
    return {
        "schema_version": 1,
        "run_id": run_id,
        "task": {"goal": "refund order 17", "notes": ["é", "日本語", "😀", "\u2028", "\x00", 'q"\\']},
        "steps": [{"number": 1, "data": [0.1, -0.0, 2.5e-300, 1e300, 2**63, -(2**70), True, False, None]}],
        "metadata": {"nested": {"deep": [[[{}]]], "empty": []}},
        "stop_reason": None,
        **fields,
    }


def _intent(call_id: str) -> dict[str, Any]:
    return {"type": "intent", "call_id": call_id, "tool": "refund", "args": {"order": 17}, "args_hash": "h"}


def _result(call_id: str, data: Any = "ok") -> dict[str, Any]:
    return {"type": "result", "call_id": call_id, "result": {"tool": "refund", "data": data}}


@_contract
def saved_record_loads_back_equal(store: RunStore) -> None:
    record = _record("run_a")
    store.save("run_a", record)
    loaded, entries = store.load("run_a")
    assert loaded == record
    assert entries == []
    assert math.copysign(1.0, loaded["steps"][0]["data"][1]) == -1.0  # -0.0 kept its sign


@_contract
def loaded_data_is_a_copy(store: RunStore) -> None:
    record = _record("run_a")
    store.save("run_a", record)
    record["task"]["goal"] = "changed after the save"
    loaded, _ = store.load("run_a")
    loaded["metadata"]["nested"] = "changed after the load"
    again, _ = store.load("run_a")
    assert again == _record("run_a")


@_contract
def entries_load_in_the_order_appended(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    entries = [_intent(f"c{i}") if i % 2 else _result(f"c{i - 1}", data=[i, "é"]) for i in range(1, 41)]
    for entry in entries:
        store.append("run_a", entry)
    record, loaded = store.load("run_a")
    assert record == _record("run_a")
    assert loaded == entries


@_contract
def a_save_subsumes_the_journal(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    store.append("run_a", _intent("c1"))
    store.append("run_a", _result("c1"))
    store.save("run_a", _record("run_a", stop_reason="done"))
    store.append("run_a", _intent("c2"))
    record, entries = store.load("run_a")
    assert record["stop_reason"] == "done"
    assert entries == [_intent("c2")]


@_contract
def the_last_save_wins(store: RunStore) -> None:
    for n in range(5):
        store.save("run_a", _record("run_a", turns=n))
    record, _ = store.load("run_a")
    assert record["turns"] == 4


@_contract
def an_unknown_run_is_an_error_not_an_empty_record(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    with pytest.raises(CheckpointError) as caught:
        store.load("run_never_saved")
    assert "run_never_saved" in str(caught.value)
    assert "run_never_saved" not in store.list_runs()


@_contract
def appending_to_an_unsaved_run_is_refused(store: RunStore) -> None:
    with pytest.raises(CheckpointError):
        store.append("run_never_saved", _intent("c1"))
    assert store.list_runs() == []


@_contract
def list_runs_names_every_saved_run(store: RunStore) -> None:
    assert store.list_runs() == []
    ids = ["run_a", "run-B", "r" * 128, "0"]
    for run_id in ids:
        store.save(run_id, _record(run_id))
    store.append("run_a", _intent("c1"))
    assert sorted(store.list_runs()) == sorted(ids)


@_contract
def runs_are_kept_apart(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    store.save("run_b", _record("run_b", turns=2))
    store.append("run_a", _intent("a1"))
    store.append("run_b", _intent("b1"))
    store.save("run_b", _record("run_b", turns=3))
    assert store.load("run_a") == (_record("run_a"), [_intent("a1")])
    assert store.load("run_b") == (_record("run_b", turns=3), [])


@_contract
def a_lock_is_exclusive_until_released(store: RunStore) -> None:
    held = store.lock("run_a")
    assert isinstance(held, RunLock)
    with pytest.raises(CheckpointLocked):
        store.lock("run_a")
    other = store.lock("run_b")  # a lock is per run
    held.release()
    held.release()  # releasing twice is harmless
    again = store.lock("run_a")
    again.release()
    other.release()


@_contract
def leaving_a_with_block_releases_the_lock(store: RunStore) -> None:
    with store.lock("run_a"):
        with pytest.raises(CheckpointLocked):
            store.lock("run_a")
    with pytest.raises(RuntimeError):
        with store.lock("run_a"):
            raise RuntimeError("the body failed")
    store.lock("run_a").release()


@_contract
def a_lock_does_not_stop_reading(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    with store.lock("run_a"):
        assert store.load("run_a") == (_record("run_a"), [])
        assert store.list_runs() == ["run_a"]


@_contract
def a_record_json_cannot_hold_is_refused_and_the_old_one_kept(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    for bad in (object(), float("nan"), float("inf"), {1j: 1}, {"x": {1, 2}}):
        with pytest.raises(CheckpointError):
            store.save("run_a", _record("run_a", extra={"bad": bad}))
    with pytest.raises(CheckpointError):
        store.save("run_a", "not a dict")  # type: ignore[arg-type]
    assert store.load("run_a") == (_record("run_a"), [])


@_contract
def an_entry_json_cannot_hold_is_refused_and_the_journal_kept(store: RunStore) -> None:
    store.save("run_a", _record("run_a"))
    store.append("run_a", _intent("c1"))
    with pytest.raises(CheckpointError):
        store.append("run_a", _result("c1", data=object()))
    with pytest.raises(CheckpointError):
        store.append("run_a", _result("c1", data=float("nan")))
    assert store.load("run_a") == (_record("run_a"), [_intent("c1")])


def check_store(make_store: Callable[[], RunStore]) -> list[str]:
    """Run every contract against a fresh store from `make_store`; the names of those run."""
    for contract in CONTRACTS:
        try:
            contract(make_store())
        except AssertionError as exc:
            raise AssertionError(f"{contract.__name__}: {exc}") from exc
    return [c.__name__ for c in CONTRACTS]


class RunStoreConformance:
    """Subclass in a ``test_*.py`` file and override `make_store`; every contract becomes a test."""

    def make_store(self, tmp_path: Path) -> RunStore:
        raise NotImplementedError("return a fresh, empty store (tmp_path is yours to use)")

    @pytest.mark.parametrize("contract", CONTRACTS, ids=[c.__name__ for c in CONTRACTS])
    def test_contract(self, contract: Contract, tmp_path: Path) -> None:
        contract(self.make_store(tmp_path))
