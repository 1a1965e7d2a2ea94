"""Water amounts in units residents can picture: gallons a day between two reads."""

from __future__ import annotations

from portal.billing.units import GALLONS_PER_HCF, gallons_per_day, to_gallons


def test_one_hcf_is_748_gallons():
    assert GALLONS_PER_HCF == 748
    assert to_gallons(2, "HCF") == 1496
    assert to_gallons(500, "gallons") == 500


def test_gallons_per_day_divides_by_the_days_between_reads():
    # 10 HCF = 7,480 gallons over January's 31 days.
    assert gallons_per_day(10, "HCF", "2026-01-01", "2026-02-01") == 241
    # 28 days in February 2026; gallons are taken as they are.
    assert gallons_per_day(2800, "gallons", "2026-02-01", "2026-03-01") == 100


def test_no_figure_without_an_earlier_read_or_a_real_period():
    assert gallons_per_day(10, "HCF", None, "2026-02-01") is None
    assert gallons_per_day(10, "HCF", "2026-02-01", "2026-02-01") is None
    assert gallons_per_day(10, "HCF", "2026-03-01", "2026-02-01") is None
