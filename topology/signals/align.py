"""Resampling time-stamped values onto a scenario's slots.

The rules, in one place (docs/SIGNALS.md repeats them):

1. **A value holds from its timestamp until the next one** (interval-
   beginning, as the services publish: Electricity Maps' `datetime`, the UK
   API's `from`, WattTime's `point_time`). The series' *step* is its native
   resolution: given by the source, else the median spacing of its points
   (one slot when there is a single point). A value holds at most 1.5 steps;
   the last one holds one step.
2. **Slot value = time-weighted mean** of what holds during the slot: the
   mean for power [kW], intensity [gCO2/kWh] and utilisation [fraction].
   Energy per interval [kWh] is first divided by its interval's length, so
   a slot gets the *sum* of the energy inside it (shared pro rata where an
   interval straddles a slot edge), written as mean power over the slot.
   A series coarser than the slots is held constant over each interval.
   With `sample="point"` a rate's slot value is instead the value that holds
   at the slot's start (a point sample, as a controller that reads the
   signal once per slot sees it); energy per interval is always summed.
3. **Gaps**: where points are more than 1.5 steps apart, the missing
   points are filled by linear interpolation in time between the two
   neighbours if the gap (spacing minus one step) is at most `max_gap_s`
   (default 2 h: a missing hourly value, or up to eight quarter-hours);
   longer gaps are refused, since interpolation would invent the shape of
   the day (a solar dip, an evening peak). Gaps outside the horizon do not
   matter.
4. **Coverage**: the points must cover the whole horizon; nothing is
   extrapolated at either end.

All times are seconds since the Unix epoch (UTC); callers parse and refuse
local times without an offset before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgeplace.topology.errors import Problem
from edgeplace.topology.signals.series import SlotGrid, iso

#: Longest gap filled by linear interpolation [min]; longer gaps are refused.
DEFAULT_MAX_GAP_MINUTES = 120.0
#: Points further apart than this many steps leave a gap.
GAP_FACTOR = 1.5


@dataclass(frozen=True)
class Aligned:
    """The outcome of `align`: `values` per slot, or None with `problems`."""

    values: np.ndarray | None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    step_s: float = 0.0


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes:02d} min"
    return f"{hours} h" if hours else f"{minutes} min"


#: How a slot gets its value from a finer series: the time-weighted mean, or the value at its start.
SAMPLES = ("mean", "point")


def align(times_s: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, grid: SlotGrid, *,
          energy: bool = False, step_s: float | None = None, max_gap_s: float = DEFAULT_MAX_GAP_MINUTES * 60,
          labels: Sequence[str] | None = None, what: str = "series", fix: str = "add the missing values",
          sample: str = "mean") -> Aligned:
    """Mean per slot of the step function through (`times_s`, `values`), by the module's rules
    (with `sample="point"`, its value at each slot's start).

    `energy`: values are energy per interval (summed into slots, returned as
    mean power per slot); else rates (power, intensity, utilisation).
    `labels` name each point in messages ("row 12"); `what` names the
    series ("region DE"); `fix` ends the coverage messages.
    """
    if sample not in SAMPLES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLES)} (got {sample!r})")
    if energy and sample == "point":
        return Aligned(None, [Problem(what, "is energy per interval, which is summed into slots; a point sample "
                                            "applies to rates (power, intensity, utilisation): use --sample mean "
                                            "or give the series in kW")])
    with np.errstate(over="ignore", invalid="ignore"):  # absurd magnitudes end as a problem below, not a warning
        result = _align(times_s, values, grid, energy, step_s, max_gap_s, labels, what, fix, sample)
    if result.values is not None and not np.isfinite(result.values).all():
        return Aligned(None, [Problem(what, "has values too large to add up; check the unit")], result.notes, result.step_s)
    return result


def _align(times_s, values, grid: SlotGrid, energy: bool, step_s: float | None, max_gap_s: float,
           labels: Sequence[str] | None, what: str, fix: str, sample: str = "mean") -> Aligned:
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    names = list(labels) if labels is not None else [f"the value at {iso(x)}" for x in t]
    if step_s is None or not step_s > 0:
        # The native step from every timestamp, missing values included: a
        # missing value is a gap in the series, not a coarser series.
        stamps = np.unique(t[np.isfinite(t)])
        step_s = float(np.median(np.diff(stamps))) if stamps.size > 1 else grid.slot_seconds
    keep = np.isfinite(t) & np.isfinite(v)  # NaN is a missing value: a gap
    if not keep.all():
        t, v = t[keep], v[keep]
        names = [n for n, k in zip(names, keep) if k]
    if t.size == 0:
        return Aligned(None, [Problem(what, f"has no values; the horizon is {grid.describe()}; {fix}")])
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    names = [names[i] for i in order]
    problems: list[Problem] = []
    notes: list[str] = []

    diffs = np.diff(t)
    same = np.flatnonzero(diffs == 0)
    if same.size:
        i = int(same[0])
        return Aligned(None, [Problem(what, f"{names[i]} and {names[i + 1]} both give a value at {iso(t[i])}; "
                                      f"keep one ({same.size} duplicate time(s))")])
    hold_limit = GAP_FACTOR * step_s

    if energy:
        # Energy per interval -> mean power over the interval the row covers [kWh / h = kW].
        own = np.full(t.size, step_s)
        own[:-1] = np.where(diffs <= hold_limit, diffs, step_s)
        v = v / (own / 3600.0)

    lo, hi = grid.start_s, grid.start_s + grid.slots * grid.slot_seconds
    new_t, new_v = [t], [v]
    for i in np.flatnonzero(diffs > hold_limit):
        a, b = t[i], t[i + 1]
        gap_from, gap_to = a + step_s, b
        if gap_to <= lo or gap_from >= hi:
            continue  # outside the horizon: nothing to fill
        gap = gap_to - gap_from
        if gap > max_gap_s:
            problems.append(Problem(what, f"no values for {_duration(gap)} between {names[i]} ({iso(a)}) and "
                                          f"{names[i + 1]} ({iso(b)}), longer than the {_duration(max_gap_s)} filled by "
                                          f"interpolation; add the missing values or allow longer gaps (--max-gap-minutes)"))
            continue
        k = max(int(round((b - a) / step_s)) - 1, 1)
        fill_t = a + (b - a) * np.arange(1, k + 1) / (k + 1)
        new_t.append(fill_t)
        new_v.append(np.interp(fill_t, [a, b], [v[i], v[i + 1]]))
        notes.append(f"{what}: filled {_duration(gap)} between {names[i]} and {names[i + 1]} "
                     f"({iso(gap_from)}..{iso(gap_to)}) by linear interpolation")
    if len(new_t) > 1:
        t = np.concatenate(new_t)
        v = np.concatenate(new_v)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]

    seg_end = np.empty_like(t)
    spacing = np.diff(t)
    seg_end[:-1] = np.where(spacing <= hold_limit, t[1:], t[:-1] + step_s)
    seg_end[-1] = t[-1] + step_s
    if t[0] > lo:
        problems.append(Problem(what, f"starts at {iso(t[0])}, after the horizon starts ({iso(lo)}); {fix} from {iso(lo)}"))
    if seg_end[-1] < hi:
        problems.append(Problem(what, f"ends at {iso(seg_end[-1])} (the last value at {iso(t[-1])} holds one step of "
                                      f"{_duration(step_s)}), before the horizon ends ({iso(hi)}); {fix} up to {iso(hi)}"))
    if problems:
        return Aligned(None, problems, notes, step_s)

    # Cut the horizon at every slot edge and segment boundary; each piece lies
    # in one slot and one segment, so a slot's mean is a plain weighted sum.
    edges = grid.edges_s()
    cuts = np.union1d(edges, np.concatenate([t, seg_end]))
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    mids = (cuts[:-1] + cuts[1:]) / 2
    lengths = np.diff(cuts)
    seg = np.searchsorted(t, mids, side="right") - 1
    covered = (seg >= 0) & (mids < seg_end[np.maximum(seg, 0)])
    slot = np.clip(np.searchsorted(edges, mids, side="right") - 1, 0, grid.slots - 1)
    weighted = np.where(covered, v[np.maximum(seg, 0)] * lengths, 0.0)
    total = np.bincount(slot, weights=weighted, minlength=grid.slots)
    seen = np.bincount(slot, weights=np.where(covered, lengths, 0.0), minlength=grid.slots)
    short = np.flatnonzero(seen < grid.slot_seconds * (1 - 1e-9))
    if short.size:  # only possible inside a refused gap, which was reported above
        s = int(short[0])
        return Aligned(None, [Problem(what, f"slot {s} ({iso(edges[s])}) is not fully covered; {fix}")], notes, step_s)
    if sample == "point":  # the value holding at each slot's start (coverage checked above)
        return Aligned(v[np.searchsorted(t, edges[:-1], side="right") - 1], [], notes, step_s)
    return Aligned(total / grid.slot_seconds, [], notes, step_s)


__all__ = ["DEFAULT_MAX_GAP_MINUTES", "SAMPLES", "Aligned", "align"]
