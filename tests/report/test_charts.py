"""The inline-SVG charts: valid XML, the marks a reader sees, escaped text, the same bytes for the same input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from loopml.report.charts import (
    Marker,
    Series,
    XYSeries,
    bar_chart,
    bar_list,
    category_bars,
    histogram,
    line_chart,
    missing_map,
    xy_chart,
)

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & \'co\''


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def _marks(root: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in root.iter() if kind in (e.get("class") or "").split()]


def _titles(root: ET.Element) -> list[str]:
    return [e.text or "" for e in root.iter(f"{NS}title")]


# -- line chart ------------------------------------------------------------------------------------
def test_a_line_chart_draws_a_line_and_a_hoverable_point_per_value():
    root = _parse(line_chart(["w1", "w2", "w3"], [Series("age", [0.1, 0.2, 0.4]), Series("plan", [0.3, 0.2, 0.1])],
                             title="PSI"))
    lines = _marks(root, "line")
    assert len(lines) == 2 and all(re.fullmatch(r"M[\d. ]+(L[\d. ]+){2}", e.get("d")) for e in lines)
    assert len(_marks(root, "point")) == 6
    assert "age · w3: 0.4" in _titles(root) and "plan · w1: 0.3" in _titles(root)


def test_a_missing_value_breaks_the_line_instead_of_bridging_it():
    root = _parse(line_chart(["1", "2", "3", "4"], [Series("m", [0.5, None, 0.6, 0.7])], title="gap"))
    assert [e.get("d").count("L") for e in _marks(root, "line")] == [0, 1]
    assert len(_marks(root, "point")) == 3


def test_the_goal_line_sits_at_the_goal_between_the_ticks_around_it():
    root = _parse(line_chart(["1", "2"], [Series("recall", [0.6, 1.0])], title="goal", goal=0.8,
                             goal_label="goal 0.8"))
    [goal] = [e for e in root.iter(f"{NS}line") if e.get("class") == "goal"]
    ticks = {e.text: float(e.get("y")) - 4 for e in root.iter(f"{NS}text") if e.text in ("0.6", "1.0")}
    assert float(goal.get("y1")) == pytest.approx((ticks["0.6"] + ticks["1.0"]) / 2, abs=0.2)
    assert "goal 0.8: 0.8" in _titles(root)
    assert any(e.text == "goal 0.8" for e in root.iter(f"{NS}text"))  # in the legend


def test_a_band_is_shaded_from_low_to_high_and_its_interval_is_in_the_hover_text():
    root = _parse(line_chart(["1", "2", "3"], [Series("accuracy", [0.8, 0.7, 0.75], low=[0.75, 0.6, 0.7],
                                                      high=[0.85, 0.8, 0.8])], title="band"))
    [band] = _marks(root, "band")
    assert band.get("d").endswith("Z") and band.get("d").count("L") == 5  # 3 points along high, 3 back along low
    assert "accuracy · 2: 0.7 (95% CI 0.6–0.8)" in _titles(root)


def test_a_log_scale_ticks_four_decades_of_powers_of_ten_and_keeps_smaller_values_on_the_axis():
    root = _parse(line_chart(["1", "2", "3"], [Series("psi", [0.0, 0.00005, 12.0])], title="log", log_y=True))
    labels = [e.text for e in root.iter(f"{NS}text") if e.get("text-anchor") == "end"]
    assert labels == ["0.01", "0.1", "1", "10", "100"]
    bottom = {float(c.get("cy")) for c in _marks(root, "point") if not c.find(f"{NS}title").text.endswith("12")}
    assert len(bottom) == 1  # 0 and 0.00005 both sit on the axis
    assert {"psi · 1: 0", "psi · 2: 5e-05"} <= set(_titles(root))  # the hover text keeps the true value


def test_a_line_chart_without_values_says_so():
    root = _parse(line_chart(["1", "2"], [Series("p99", [None, None])], title="latency"))
    assert _marks(root, "line") == [] and any(e.text == "no values to draw yet" for e in root.iter(f"{NS}text"))


def test_a_series_of_the_wrong_length_names_the_series_and_the_fix():
    with pytest.raises(ValueError, match=r"line_chart: series 'p99' has 2 values for 3 x labels; give one value "
                                         r"\(or None\) per x label"):
        line_chart(["1", "2", "3"], [Series("p99", [1.0, 2.0])], title="latency")
    with pytest.raises(ValueError, match="bar_chart: series 'm' has 1 low for 2 x labels"):
        bar_chart(["1", "2"], [Series("m", [1.0, 2.0], low=[0.5])], title="bars")


# -- bar chart -------------------------------------------------------------------------------------
def test_grouped_bars_draw_one_bar_per_series_and_label_and_show_a_zero_as_a_hairline():
    root = _parse(bar_chart(["w1", "w2"], [Series("missing", [0.0, 0.25]), Series("unknown", [0.5, None])],
                            title="quality", percent=True))
    bars = _marks(root, "bar")
    assert len(bars) == 3  # the None leaves its slot empty
    heights = {b.find(f"{NS}title").text: float(b.get("height")) for b in bars}
    assert heights["missing · w1: 0.0%"] == 0.5
    assert heights["unknown · w1: 50.0%"] == pytest.approx(2 * heights["missing · w2: 25.0%"], rel=0.01)
    assert {e.text for e in root.iter(f"{NS}text")} >= {"0%", "50%"}


# -- distributions ---------------------------------------------------------------------------------
def test_a_histogram_compares_shares_so_samples_of_any_size_compare():
    rng = np.random.default_rng(0)
    root = _parse(histogram(rng.normal(0, 1, 5000), rng.normal(2, 1, 50), title="age", bins=10))
    bars = _marks(root, "bar")
    assert len(bars) == 20
    shares = {"reference": 0.0, "current": 0.0}
    for b in bars:
        name, share = re.match(r"(\w+): ([\d.]+)% of", b.find(f"{NS}title").text).groups()
        shares[name] += float(share)
    assert shares == pytest.approx({"reference": 100.0, "current": 100.0}, abs=0.6)
    assert any((e.text or "").startswith("reference (n=5000)") for e in root.iter(f"{NS}text"))


def test_one_outlier_does_not_squash_the_histogram_it_falls_in_the_end_bin():
    values = [float(v) for v in np.linspace(0, 10, 999)] + [1e9]
    root = _parse(histogram(values, values, title="income"))
    ticks = [float(e.text) for e in root.iter(f"{NS}text") if e.get("text-anchor") == "middle" and e.text
             and re.fullmatch(r"[\d.e+]+", e.text)]
    assert max(ticks) <= 10
    assert "current: 5.5% of 1000 in ≥ 9.46" in _titles(root)  # the outlier with the top 5% of values


def test_small_integers_get_one_bin_per_value():
    root = _parse(histogram([1, 2, 2, 3], [3, 3, 4], title="years"))
    assert len(_marks(root, "bar")) == 8  # values 1 to 4, two samples
    assert "current: 66.7% of 3 in 3" in _titles(root)


def test_category_bars_keep_the_top_categories_a_category_only_one_side_has_and_the_rest_as_other():
    reference = ["a"] * 50 + ["b"] * 30 + [f"r{i}" for i in range(20)]
    current = ["b"] * 60 + ["new"] * 40
    root = _parse(category_bars(reference, current, title="plan", top=3))
    names = [e.text for e in root.iter(f"{NS}text") if e.get("text-anchor") == "end"]
    assert names == ["b", "a", "new", "(other: 20)"]
    assert "current: new 40.0%" in _titles(root) and "reference: new 0.0%" in _titles(root)


def test_empty_samples_still_make_a_chart_that_says_so():
    for svg in (histogram([], [None, "x"], title="h"), category_bars([None], [], title="c")):
        root = _parse(svg)
        assert any("no " in (e.text or "") and "values" in (e.text or "") for e in root.iter(f"{NS}text"))


# -- numeric x, missing-value map, ranked bars ---------------------------------------------------
def test_an_xy_chart_draws_lines_points_reference_lines_and_the_marked_point_where_they_belong():
    svg = xy_chart([XYSeries("pr", [0.0, 0.5, 1.0], [1.0, 0.8, 0.5]), XYSeries("rows", [0.2, 0.4], [0.6, 0.7],
                                                                              mode="points")],
                   title="PR", marker=Marker(0.5, 0.8, "threshold 0.4"), hlines=[(0.7, "precision ≥ 0.7")],
                   vlines=[(0.5, "recall ≥ 0.5")], diagonal=True)
    root = _parse(svg)
    assert len(_marks(root, "line")) == 1 and len(_marks(root, "point")) == 2
    [ring] = _marks(root, "marker")
    [vline] = [e for e in root.iter(f"{NS}line") if e.get("class") == "goal" and e.get("x1") == e.get("x2")]
    assert ring.get("cx") == vline.get("x1")  # the operating point sits on the recall line it meets
    assert "threshold 0.4: (0.5, 0.8)" in _titles(root) and "precision ≥ 0.7: 0.7" in _titles(root)
    assert "perfectly calibrated: y = x" in _titles(root)


def test_a_log_x_axis_ticks_powers_of_ten():
    root = _parse(xy_chart([XYSeries("curve", [500, 1000, 2000], [0.6, 0.65, 0.7])], title="c", log_x=True))
    ticks = [e.text for e in root.iter(f"{NS}text") if e.text in ("100", "1000", "10000")]
    assert ticks == ["100", "1000", "10000"]


def test_an_xy_series_of_unequal_lengths_names_the_series_and_the_fix():
    with pytest.raises(ValueError, match=r"^xy_chart: series 'pr' has 3 x values and 2 y values; give one y per x$"):
        xy_chart([XYSeries("pr", [0.1, 0.2, 0.3], [0.5, 0.6])], title="PR")


def test_a_missing_map_shades_each_block_by_its_missing_share_and_ends_at_the_last_row():
    root = _parse(missing_map(["age", "income"], [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]], title="m", block_rows=40,
                              rows=110))
    cells = _marks(root, "cell")
    assert len(cells) == 6
    fills = [c.get("fill") for c in cells]
    assert fills[0] == fills[3] == fills[5] and len({fills[0], fills[1], fills[2]}) == 3
    assert "age · rows 81–110: 100.0% missing" in _titles(root) and "income · rows 1–40: 0.0% missing" in _titles(root)


def test_a_missing_map_with_ragged_blocks_names_the_column_and_the_fix():
    with pytest.raises(ValueError, match=r"^missing_map: column 'b' has 1 blocks, the first column 2; give every "
                                         r"column the same blocks$"):
        missing_map(["a", "b"], [[0.0, 0.1], [0.2]], title="m", block_rows=10)


def test_bar_list_ranks_in_the_order_given_and_draws_a_negative_value_left_of_zero():
    root = _parse(bar_list(["age", "state", "noise"], [0.5, 0.2, -0.05], title="importance"))
    bars = _marks(root, "bar")
    assert [b.find(f"{NS}title").text for b in bars] == ["age: 0.5", "state: 0.2", "noise: -0.05"]
    assert float(bars[2].get("x")) < float(bars[0].get("x")) == float(bars[1].get("x"))
    assert float(bars[0].get("width")) > float(bars[1].get("width")) > float(bars[2].get("width"))


def test_bar_list_needs_one_value_per_label():
    with pytest.raises(ValueError, match=r"^bar_list: 2 labels and 1 values; give one value per label$"):
        bar_list(["a", "b"], [0.1], title="importance")


# -- every chart ---------------------------------------------------------------------------------
def _every_chart(name: str) -> list[str]:
    series = [Series(name, [0.1, None, 0.3], low=[0.0, None, 0.2], high=[0.2, None, 0.4])]
    return [line_chart([name, "2", "3"], series, title=name, y_label=name, goal=0.2, goal_label=name),
            bar_chart([name, "2", "3"], series, title=name, y_label=name, goal=0.2, goal_label=name),
            histogram([1.0, 2.0], [1.5], title=name, names=(name, name)),
            category_bars([name, "a"], [name], title=name, names=(name, name)),
            xy_chart([XYSeries(name, [1.0, 2.0], [0.1, 0.3])], title=name, x_label=name, y_label=name,
                     marker=Marker(1.0, 0.1, name), hlines=[(0.2, name)], vlines=[(1.5, name)]),
            missing_map([name, "b"], [[0.0, 0.5], [0.1, 0.0]], title=name, block_rows=10),
            bar_list([name, "b"], [0.3, 0.1], title=name, x_label=name)]


def test_text_from_user_data_is_escaped_in_every_chart():
    for svg in _every_chart(HOSTILE):
        root = _parse(svg)  # a stray < or & would not parse
        assert "<script>" not in svg
        assert HOSTILE in [e.text for e in root.iter(f"{NS}title")]
        assert any(HOSTILE in "".join(e.itertext()) for e in root.iter(f"{NS}text"))


def test_the_same_input_gives_the_same_bytes():
    assert _every_chart("age") == _every_chart("age")
