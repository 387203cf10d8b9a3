"""Walk-forward windows: rolling or anchored in-sample windows, each followed by an out-of-sample one.

    rolling   |== IS ==|gap|- OOS 0 -|
                 |== IS ==|gap|- OOS 1 -|
                    |== IS ==|gap|- OOS 2 -|
    anchored  |== IS ======|gap|- OOS 0 -|
              |== IS ===============|gap|- OOS 1 -|

The out-of-sample windows tile the data without overlap (each starts where the previous one
ended), so their returns chain into one stitched curve. Lengths are either bar counts (``int``)
or time spans (a pandas offset alias such as ``"30D"``, a ``pd.Timedelta`` / ``timedelta`` or a
``pd.DateOffset``); all lengths of one splitter must be of the same kind (``gap=0`` fits both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset

#: A window length: bars (int) or a time span.
Length = int | str | timedelta | pd.Timedelta | pd.DateOffset


@dataclass(frozen=True, slots=True)
class Split:
    """One fold's windows, as positions into the index (``stop`` exclusive) and inclusive bounds.

    ``in_sample_start``/``in_sample_end`` and ``out_of_sample_start``/``out_of_sample_end`` are the
    timestamps of the first and last bar of each window (what ``backtest_folds`` stores).
    """

    fold_index: int
    in_sample: slice
    out_of_sample: slice
    in_sample_start: pd.Timestamp
    in_sample_end: pd.Timestamp
    out_of_sample_start: pd.Timestamp
    out_of_sample_end: pd.Timestamp

    @property
    def in_sample_bars(self) -> int:
        return int(self.in_sample.stop - self.in_sample.start)

    @property
    def out_of_sample_bars(self) -> int:
        return int(self.out_of_sample.stop - self.out_of_sample.start)


class WalkForwardSplitter:
    """Splits a time index into walk-forward folds.

    - ``in_sample``: length of the in-sample (fitting) window; with ``anchored=True`` it is the
      length of the *first* in-sample window, and later ones grow from the same start.
    - ``out_of_sample``: length of each out-of-sample window; it is also the step between folds.
    - ``gap``: bars (or time) left out between in-sample and out-of-sample (an embargo against
      leakage from overlapping labels or indicators); default 0.
    - ``allow_partial``: keep a last out-of-sample window shorter than ``out_of_sample`` (default:
      dropped, so every fold is evaluated over the same length).
    - ``min_in_sample_bars``: a fold whose in-sample window has fewer bars is skipped (time-based
      windows over gaps in the data); default 2.

    With time lengths, window ``k``'s out-of-sample part is ``[S_k, S_k + out_of_sample)`` with
    ``S_0 = first timestamp + in_sample + gap`` and ``S_{k+1} = S_k + out_of_sample``; the bars are
    those whose timestamps fall in the half-open interval. A window is complete when the data
    reaches its end: ``last timestamp + median bar spacing >= S_k + out_of_sample``. Windows
    without any bar (a hole in the data) are skipped; fold indices stay consecutive.
    """

    def __init__(
        self,
        in_sample: Length,
        out_of_sample: Length,
        *,
        gap: Length = 0,
        anchored: bool = False,
        allow_partial: bool = False,
        min_in_sample_bars: int = 2,
    ) -> None:
        lengths = {"in_sample": in_sample, "out_of_sample": out_of_sample, "gap": gap}
        kinds = {name: _kind(name, value) for name, value in lengths.items()}
        used = {kind for name, kind in kinds.items() if not (name == "gap" and _is_zero(gap))}
        if len(used) != 1:
            raise ValueError("in_sample, out_of_sample and gap must all be bar counts (int) or all time spans")
        self.by_time = used == {"time"}
        self.anchored = bool(anchored)
        self.allow_partial = bool(allow_partial)
        if not isinstance(min_in_sample_bars, int) or min_in_sample_bars < 1:
            raise ValueError("min_in_sample_bars must be an int >= 1")
        self.min_in_sample_bars = min_in_sample_bars
        if self.by_time:
            self._is_off = _offset("in_sample", in_sample)
            self._oos_off = _offset("out_of_sample", out_of_sample)
            self._gap_off = None if _is_zero(gap) else _offset("gap", gap)
        else:
            self._is_bars = _bars("in_sample", in_sample, low=1)
            self._oos_bars = _bars("out_of_sample", out_of_sample, low=1)
            self._gap_bars = _bars("gap", gap, low=0)
        self._spec = {name: _describe(value) for name, value in lengths.items()}

    def describe(self) -> dict[str, Any]:
        """JSON description stored with the run (``config.walk_forward.splitter``)."""
        return {
            "scheme": "anchored" if self.anchored else "rolling",
            "unit": "time" if self.by_time else "bars",
            **self._spec,
            "allow_partial": self.allow_partial,
            "min_in_sample_bars": self.min_in_sample_bars,
        }

    def __repr__(self) -> str:
        spec = self.describe()
        return (
            f"WalkForwardSplitter({spec['in_sample']!r}, {spec['out_of_sample']!r}, gap={spec['gap']!r}, "
            f"anchored={self.anchored})"
        )

    def split(self, index: pd.Index) -> list[Split]:
        """The folds of ``index`` (a strictly increasing ``DatetimeIndex``), in time order.

        Raises ``ValueError`` when the index is not strictly increasing or is too short for a fold.
        """
        if not isinstance(index, pd.DatetimeIndex):
            raise TypeError("walk-forward data must be indexed by time (a DatetimeIndex)")
        if not index.is_monotonic_increasing or index.has_duplicates:
            raise ValueError("the data's timestamps must be strictly increasing")
        raw = self._split_time(index) if self.by_time else self._split_bars(len(index))
        folds: list[Split] = []
        for is_start, is_stop, oos_start, oos_stop in raw:
            if is_stop - is_start < self.min_in_sample_bars or oos_stop <= oos_start:
                continue
            folds.append(
                Split(
                    fold_index=len(folds),
                    in_sample=slice(is_start, is_stop),
                    out_of_sample=slice(oos_start, oos_stop),
                    in_sample_start=index[is_start],
                    in_sample_end=index[is_stop - 1],
                    out_of_sample_start=index[oos_start],
                    out_of_sample_end=index[oos_stop - 1],
                )
            )
        if not folds:
            raise ValueError(f"{len(index)} bars are too few for one fold of {self!r}")
        return folds

    def _split_bars(self, n: int) -> list[tuple[int, int, int, int]]:
        out = []
        oos_start = self._is_bars + self._gap_bars
        while oos_start < n:
            oos_stop = oos_start + self._oos_bars
            if oos_stop > n:
                if not self.allow_partial:
                    break
                oos_stop = n
            is_stop = oos_start - self._gap_bars
            is_start = 0 if self.anchored else is_stop - self._is_bars
            out.append((is_start, is_stop, oos_start, oos_stop))
            oos_start = oos_stop
        return out

    def _split_time(self, index: pd.DatetimeIndex) -> list[tuple[int, int, int, int]]:
        out: list[tuple[int, int, int, int]] = []
        if len(index) < 2:
            return out
        values = index
        spacing = pd.Series(index[1:] - index[:-1]).median()  # the index's own unit (pandas 3: often "us")
        data_end = index[-1] + spacing
        start = index[0] + self._is_off
        if self._gap_off is not None:
            start = start + self._gap_off
        while start <= index[-1]:
            end = start + self._oos_off
            if end > data_end and not self.allow_partial:
                break
            is_end_time = start - self._gap_off if self._gap_off is not None else start
            oos_start = int(values.searchsorted(start, side="left"))
            oos_stop = int(values.searchsorted(end, side="left"))
            is_stop = int(values.searchsorted(is_end_time, side="left"))
            is_start = 0 if self.anchored else int(values.searchsorted(is_end_time - self._is_off, side="left"))
            out.append((is_start, is_stop, oos_start, oos_stop))
            start = end
        return out


def _kind(name: str, value: object) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a bar count or a time span, got a bool")
    if isinstance(value, int | np.integer):
        return "bars"
    if isinstance(value, str | timedelta | pd.Timedelta | pd.DateOffset):
        return "time"
    raise TypeError(f"{name} must be a bar count (int) or a time span (e.g. '30D'), got {type(value).__name__}")


def _is_zero(value: object) -> bool:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value) == 0
    if isinstance(value, timedelta | pd.Timedelta):
        return pd.Timedelta(value) == pd.Timedelta(0)
    return False


def _bars(name: str, value: object, *, low: int) -> int:
    assert isinstance(value, int | np.integer)
    bars = int(value)
    if bars < low:
        raise ValueError(f"{name} must be >= {low} bars, got {bars}")
    return bars


def _offset(name: str, value: object) -> BaseOffset:
    if not isinstance(value, str | timedelta | pd.DateOffset):
        raise TypeError(f"{name}: {value!r} is not a time span")
    try:
        offset = to_offset(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {value!r} is not a time span ({exc})") from None
    probe = pd.Timestamp("2024-01-01", tz="UTC")
    if not probe + offset > probe:
        raise ValueError(f"{name} must be a positive time span, got {value!r}")
    return offset


def _describe(value: object) -> int | str:
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, timedelta | pd.Timedelta):
        return str(pd.Timedelta(value))
    if isinstance(value, pd.DateOffset):
        return str(value.freqstr)
    return str(value)
