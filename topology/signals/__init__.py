"""Signals: grid carbon intensity, renewable supply and utilisation from real sources.

Every source ends in `SignalSeries` on a scenario's slots (`series`), which
`apply_signals` / `write_scenario` put into a scenario document:

- `files`: long-form CSV and Parquet time series, checked row by row;
- `align`: the resampling, gap and coverage rules all sources share;
- `pv`: PV output with pvlib (clear sky, or measured irradiance);
- `fuelmix`: intensity from a generation mix (IPCC AR5 lifecycle factors);
- `services`: Electricity Maps, WattTime, the GB carbon intensity API and
  the Carbon Aware SDK, over `http` (retries, back-off, rate limits);
- `prometheus`: node and pod utilisation from range queries;
- `cache` and `fetch`: responses kept on disk, used when a service is down;
- `forecast`: persistence, seasonal naive and an exponentially weighted
  daily profile, producing `series: forecast` signals.

docs/SIGNALS.md describes formats, units and rules for users. The modules
with heavy dependencies (pvlib, pyarrow) import them only when used.
"""

from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES, align
from edgeplace.topology.signals.cache import SignalCache, SignalWarning
from edgeplace.topology.signals.files import load_signal_files, read_signal_file, rows_to_series
from edgeplace.topology.signals.series import Points, SignalSeries, SlotGrid, apply_signals, write_scenario

__all__ = [
    "DEFAULT_MAX_GAP_MINUTES",
    "Points",
    "SignalCache",
    "SignalSeries",
    "SignalWarning",
    "SlotGrid",
    "align",
    "apply_signals",
    "load_signal_files",
    "read_signal_file",
    "rows_to_series",
    "write_scenario",
]
