"""The pipeline's direct step dispatch (`pipeline._step`, what `run` and `run_batch` call) runs
exactly the steps of `steps.STEPS`, in their order: it is generated from STEPS (and regenerated
by the native build), and step i applied to a hit leaves it as STEPS[i] does, for hits that each
step changes or drops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from collector import pipeline, steps
from collector.app import Collector as App
from collector.build_native import committed_dispatch, dispatch_block, step_names
from collector.context import PipelineContext
from collector.hit import Hit
from dnma.settings import Settings
from dnma.sites import dump_sites
from tests.harness import DEMO_SITE_ID, SUPER_TOKEN, demo_sites

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
BOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
BASE = {"idsite": str(DEMO_SITE_ID), "rec": "1", "url": "https://ent.demo.example/notes", "_id": "0123456789abcdef",
        "dimension1": "0350122T", "dimension2": "NOTES", "dimension5": "ELEVE"}
CASES: list[tuple[dict[str, str], str]] = [
    (BASE, UA),
    (BASE | {"uid": "eleve-1", "new_visit": "1", "dimension2": "inconnu"}, UA),
    (BASE | {"e_c": "Cat", "e_a": "Act", "e_v": "2"}, UA),
    (BASE | {"_id": "", "cid": "nothex"}, UA),
    (BASE | {"rec": "0"}, UA),
    (BASE, BOT),
    (BASE | {"idsite": "999"}, UA),
    (BASE | {"cdt": "1000000000"}, UA),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> PipelineContext:
    tmp: Path = tmp_path_factory.mktemp("steps")
    dump_sites(demo_sites(), tmp / "sites.yaml")
    return App(Settings(data_dir=tmp, sites_file=tmp / "sites.yaml", super_user_token=SUPER_TOKEN,
                        uid_secret="steps")).ctx


def _state(hit: Hit) -> dict[str, Any]:
    names = [n for n in dir(hit) if not n.startswith("_") and not callable(getattr(hit, n))]
    assert {"site", "props", "record", "reason"} <= set(names)
    return {name: getattr(hit, name) for name in names}


@pytest.mark.parametrize(("params", "ua"), CASES)
def test_each_dispatched_step_is_the_step_of_that_rank(ctx: PipelineContext, params: dict[str, str], ua: str) -> None:
    now = time.time()

    def hit() -> Hit:
        return Hit(dict(params), "203.0.113.7", {b"user-agent": ua.encode()}, "", now, {})

    assert len(steps.STEPS) == 10
    for i, (_, step) in enumerate(steps.STEPS):
        direct, dispatched = hit(), hit()
        for _, earlier in steps.STEPS[:i]:
            assert earlier(direct, ctx) is None and earlier(dispatched, ctx) is None
        reason = step(direct, ctx)
        assert pipeline._step(i, dispatched, ctx) == reason
        assert _state(dispatched) == _state(direct)
        if reason is not None:
            break
    # The whole fold agrees too.
    folded = hit()
    assert pipeline.run(folded, ctx) == reason


def test_the_dispatch_is_generated_from_steps() -> None:
    assert step_names() == [name for name, _ in steps.STEPS]  # each step labelled by its function
    assert committed_dispatch() == dispatch_block(step_names())
    # What the generator makes of another order is another dispatch: the comparison can fail.
    swapped = step_names()
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert dispatch_block(swapped) != committed_dispatch()
