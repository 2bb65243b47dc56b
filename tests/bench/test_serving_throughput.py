"""The serving benchmark's pure parts: percentiles, the mixed workload, a static batch's useful tokens, SSE lines."""

from __future__ import annotations

import math

from serving_throughput import Figures, SseParser, equal_length_row, mixed_lengths, percentile, useful_tokens


def test_percentile_is_nearest_rank_a_value_some_request_saw():
    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert percentile(values, 50) == 0.3
    assert percentile(values, 99) == 0.5
    assert percentile(values, 0) == 0.1
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert math.isnan(percentile([], 50))


def test_the_mixed_workload_asks_each_power_of_two_from_8_to_256_equally_often_shuffled():
    asks = mixed_lengths(60)
    assert sorted(set(asks)) == [8, 16, 32, 64, 128, 256]
    assert all(asks.count(size) == 10 for size in set(asks))
    assert asks != sorted(asks)
    assert mixed_lengths(60) == asks  # seeded: every run measures the same workload


def test_a_static_batch_row_counts_only_what_its_request_gets():
    eos = 0
    assert useful_tokens([5, 6, 7, 8], asked=4, eos_id=eos) == 4
    assert useful_tokens([5, 6, 7, 8], asked=2, eos_id=eos) == 2  # the batch ran on for a longer row
    assert useful_tokens([5, eos, 0, 0], asked=4, eos_id=eos) == 2  # its end of text counts, the padding not
    assert useful_tokens([5, 6, 7, eos], asked=2, eos_id=eos) == 2


def test_sse_lines_become_events_when_a_blank_line_ends_them():
    parser = SseParser()
    lines = ["event: token", 'data: {"text": "a"}', "", "", "data: x", "data: y", ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert events == [("token", '{"text": "a"}'), ("message", "x\ny")]


def test_an_equal_length_row_gives_tokens_per_second_against_each_reference():
    one = Figures("one", seconds=1.0, tokens=100)
    batch_8 = Figures("b8", seconds=1.0, tokens=400)
    batch_32 = Figures("b32", seconds=1.0, tokens=800)
    api = Figures("api", 2.0, 1280, (32,) * 2, (0.1, 0.3), (0.01, 0.02))
    assert (
        equal_length_row(api, one, batch_8, batch_32) == "| api | 640 | 6.40x | 1.60x | 0.80x | 100 | 300 | 10 | 20 |"
    )
