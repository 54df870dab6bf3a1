"""The flywheel's live review on a real store, and the watcher's loop (a pass in a child process)."""

from __future__ import annotations

import time

from protege.config import Settings
from protege.flywheel import review_routes, watch
from protege.records import CallRecord
from protege.store import Route, ShadowResult, open_store


def routed_call(i: int, task: str, ts: float, **route) -> CallRecord:
    return CallRecord(id=f"{task}-{i:03d}", ts=ts, request={"model": "m", "messages": []}, task_id=task,
                      metadata={"route": {"task": task, "attempted": True, "fallback": False} | route})


def test_review_promotes_agreeing_shadows_and_demotes_failing_specialists(tmp_path):
    settings = Settings.model_validate({"gates": {"shadow_calls": 5, "min_live_calls": 10}})
    with open_store(tmp_path / "p.db") as store:
        store.set_route(Route("agrees", "shadow", "/s/agrees"))
        store.set_route(Route("disagrees", "shadow", "/s/disagrees"))
        store.set_route(Route("breaks", "on", "/s/breaks"))
        store.set_route(Route("fine", "on", "/s/fine"))
        after = time.time() + 1
        for i in range(6):
            store.add_shadow_result(ShadowResult(f"a{i}", "agrees", True, 1.0, True, ts=after))
            store.add_shadow_result(ShadowResult(f"d{i}", "disagrees", i < 2, float(i < 2), True, ts=after))
        store.add_calls([routed_call(i, "breaks", after, fallback=i % 3 == 0,
                                     fallback_reason="invalid_output" if i % 3 == 0 else None) for i in range(12)])
        store.add_calls([routed_call(i, "fine", after) for i in range(12)])
        store.add_calls([routed_call(i, "breaks", 1.0, fallback=True, fallback_reason="invalid_output")
                         for i in range(100, 140)])  # before the route changed: not its evidence
        said = []
        verdicts = {v["task"]: v for v in review_routes(store, settings, said.append)}
        routes = store.routes()
        assert (verdicts["agrees"]["action"], routes["agrees"].mode) == ("promote", "on")
        assert (verdicts["disagrees"]["action"], routes["disagrees"].mode) == ("demote", "off")
        assert (verdicts["breaks"]["action"], routes["breaks"].mode) == ("demote", "off")
        assert "33.3% invalid outputs" in verdicts["breaks"]["reason"]
        assert (verdicts["fine"]["action"], routes["fine"].mode) == ("keep", "on")
        assert len(said) == 3 and {d.actor for d in store.decisions()} == {"monitor"}
        assert store.decisions("agrees")[0].evidence["shadow_agreement"] == 1.0


def test_watch_runs_a_pass_in_a_child_process(home):
    said = []
    watch(None, interval_s=0, max_passes=1, say=said.append)
    assert said[0] == "0 calls logged: starting a flywheel pass" and len(said) == 1  # the child exited with 0
