"""Walk-forward windows: rolling / anchored, bars / time spans, gap, completeness (no database)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pandas as pd
import pytest

from heurmetrics.backtest.splits import WalkForwardSplitter

HOURS = pd.date_range("2025-01-01", periods=24 * 10, freq="h", tz="UTC")


def bounds(splitter: WalkForwardSplitter, index: pd.DatetimeIndex = HOURS) -> list[tuple[int, int, int, int]]:
    return [
        (f.in_sample.start, f.in_sample.stop, f.out_of_sample.start, f.out_of_sample.stop)
        for f in splitter.split(index)
    ]


def test_rolling_bars_tile_the_out_of_sample_windows() -> None:
    folds = WalkForwardSplitter(48, 24).split(HOURS)
    assert [(f.in_sample.start, f.in_sample.stop, f.out_of_sample.start, f.out_of_sample.stop) for f in folds[:2]] == [
        (0, 48, 48, 72),
        (24, 72, 72, 96),
    ]
    assert len(folds) == 8 and folds[-1].out_of_sample.stop == 240
    for previous, current in itertools.pairwise(folds):
        assert current.out_of_sample.start == previous.out_of_sample.stop  # no overlap, no hole
        assert current.in_sample_bars == 48
    assert [f.fold_index for f in folds] == list(range(8))
    first = folds[0]
    assert first.in_sample_end == HOURS[47] and first.out_of_sample_start == HOURS[48]
    assert first.out_of_sample_end == HOURS[71]


def test_anchored_grows_from_the_start_and_gap_embargoes() -> None:
    assert bounds(WalkForwardSplitter(48, 24, anchored=True))[:3] == [
        (0, 48, 48, 72),
        (0, 72, 72, 96),
        (0, 96, 96, 120),
    ]
    gapped = bounds(WalkForwardSplitter(48, 24, gap=2))
    assert gapped[0] == (0, 48, 50, 74) and gapped[1] == (24, 72, 74, 98)
    assert all(oos_start - is_stop == 2 for _, is_stop, oos_start, _ in gapped)


def test_time_spans_match_bar_counts_on_regular_data() -> None:
    assert bounds(WalkForwardSplitter("2D", "1D")) == bounds(WalkForwardSplitter(48, 24))
    assert bounds(WalkForwardSplitter(timedelta(days=2), pd.Timedelta("1D"), anchored=True)) == bounds(
        WalkForwardSplitter(48, 24, anchored=True)
    )
    assert bounds(WalkForwardSplitter("2D", "1D", gap="2h"))[0] == (0, 48, 50, 74)


def test_time_windows_skip_holes_in_the_data() -> None:
    day = HOURS.normalize()
    holey = HOURS[day != pd.Timestamp("2025-01-05", tz="UTC")]
    folds = WalkForwardSplitter("2D", "1D").split(holey)
    starts = [f.out_of_sample_start for f in folds]
    assert pd.Timestamp("2025-01-05", tz="UTC") not in starts  # the empty day is no fold
    assert [f.fold_index for f in folds] == list(range(len(folds)))


def test_partial_last_window_is_dropped_unless_allowed() -> None:
    assert bounds(WalkForwardSplitter(48, 50))[-1][3] == 198
    assert bounds(WalkForwardSplitter(48, 50, allow_partial=True))[-1] == (150, 198, 198, 240)


def test_describe_is_json_for_the_run_config() -> None:
    assert WalkForwardSplitter("30D", "7D", anchored=True).describe() == {
        "scheme": "anchored",
        "unit": "time",
        "in_sample": "30D",
        "out_of_sample": "7D",
        "gap": 0,
        "allow_partial": False,
        "min_in_sample_bars": 2,
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((48, "1D"), {}, ValueError),  # mixed kinds
        ((0, 24), {}, ValueError),
        ((48, 24), {"gap": -1}, ValueError),
        ((True, 24), {}, TypeError),
        (("2D", "-1D"), {}, ValueError),
        ((2.5, 24), {}, TypeError),
        (("not a span", "1D"), {}, ValueError),
    ],
)
def test_invalid_lengths_are_refused(args: tuple[object, object], kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        WalkForwardSplitter(*args, **kwargs)  # type: ignore[arg-type]


def test_split_refuses_unsorted_or_too_short_data() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        WalkForwardSplitter(4, 2).split(HOURS[::-1])
    with pytest.raises(TypeError, match="DatetimeIndex"):
        WalkForwardSplitter(4, 2).split(pd.RangeIndex(10))
    with pytest.raises(ValueError, match="too few"):
        WalkForwardSplitter(300, 24).split(HOURS)
