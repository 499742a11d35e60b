"""The pipeline's runner: folds the steps of collector/steps.py (STEPS) over one `Hit`, or over the
hits of a bulk request step by step, stopping each hit at its first drop; times and counts every
step (`Tally`).

`run` times the steps of one hit in STEP_TIMING_SAMPLE; `run_batch` times each step once for the
whole batch, so `step_seconds / step_calls` stays the mean cost of a step per hit while the clock
is read twice per step per batch instead of twice per step per hit.
"""

from __future__ import annotations

import time

from collector import steps
from collector.context import PipelineContext
from collector.hit import DropReason, Hit


# BEGIN dispatch, generated from steps.STEPS by collector/build_native.py: do not edit
def _step(i: int, hit: Hit, ctx: PipelineContext) -> DropReason | None:
    """Step `i` of STEPS, called directly: compiled, a direct C call instead of a Python-level
    call of the function object (argument boxing and parsing on each of ~10 calls a hit)."""
    if i == 0:
        return steps.parse_site(hit, ctx)
    if i == 1:
        return steps.authenticate(hit, ctx)
    if i == 2:
        return steps.validate(hit, ctx)
    if i == 3:
        return steps.check_rec(hit, ctx)
    if i == 4:
        return steps.parse_user_agent(hit, ctx)
    if i == 5:
        return steps.exclude(hit, ctx)
    if i == 6:
        return steps.classify_action(hit, ctx)
    if i == 7:
        return steps.privacy(hit, ctx)
    if i == 8:
        return steps.dnma_properties(hit, ctx)
    return steps.build_row(hit, ctx)
# END dispatch


# Single hits: every step run is counted, and the steps of one hit in STEP_TIMING_SAMPLE are timed,
# their time counted STEP_TIMING_SAMPLE times (an unbiased estimate of the total: step_seconds /
# step_calls stays the mean cost of a step). Reading the clock around each of 10 steps of every
# hit cost more than some steps themselves.
STEP_TIMING_SAMPLE = 16
_LAST_STEP = len(steps.STEPS) - 1
_STEP_INDICES = range(len(steps.STEPS))


def run(hit: Hit, ctx: PipelineContext) -> DropReason | None:
    """Fold the steps over the hit; the first drop stops it. On success `hit.record` is set."""
    tally = ctx.tally
    tally.runs += 1
    if not tally.runs % STEP_TIMING_SAMPLE:
        return _run_timed(hit, ctx, STEP_TIMING_SAMPLE)
    for i in _STEP_INDICES:
        reason = _step(i, hit, ctx)
        if reason is not None:
            tally.stopped_at[i] += 1  # steps 0..i ran: folded into step_calls by Tally.flush
            tally.drops[reason] += 1
            return reason
    tally.stopped_at[_LAST_STEP] += 1
    flags = tally.flags
    for flag in hit.flags:
        flags[flag] += 1
    return None


def _run_timed(hit: Hit, ctx: PipelineContext, weight: int) -> DropReason | None:
    """`run`, each step timed (its time counted `weight` times)."""
    tally = ctx.tally
    calls, spent = tally.step_calls, tally.step_ns
    clock = time.perf_counter_ns
    t0 = clock()
    for i in _STEP_INDICES:
        reason = _step(i, hit, ctx)
        t1 = clock()  # one clock read per step: the end of a step is the start of the next
        spent[i] += (t1 - t0) * weight
        calls[i] += 1
        if reason is not None:
            tally.drops[reason] += 1
            return reason
        t0 = t1
    flags = tally.flags
    for flag in hit.flags:
        flags[flag] += 1
    return None


def run_batch(hits: list[Hit], ctx: PipelineContext) -> None:
    """`run` over each hit of a batch, step by step: every hit meets the steps in order and stops
    at its first drop (`hit.reason`), as with `run`; the steps only read per-hit state and
    order-independent caches, so the outcome is the same. Each step is timed once for the batch
    and counted once per hit it ran on."""
    tally = ctx.tally
    calls, spent, drops = tally.step_calls, tally.step_ns, tally.drops
    clock = time.perf_counter_ns
    live = hits
    for i in _STEP_INDICES:
        if not live:
            break
        dropped = False
        t0 = clock()
        for hit in live:
            reason = _step(i, hit, ctx)
            if reason is not None:
                hit.reason = reason
                dropped = True
        spent[i] += clock() - t0
        calls[i] += len(live)
        if dropped:
            kept = []
            for hit in live:
                if hit.reason is None:
                    kept.append(hit)
                else:
                    drops[hit.reason] += 1
            live = kept
    flags = tally.flags
    for hit in live:
        for flag in hit.flags:
            flags[flag] += 1
