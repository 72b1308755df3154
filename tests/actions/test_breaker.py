"""The breaker's arithmetic: the smaller of a node count and a share of the nodes seen."""

from __future__ import annotations

import pytest

from fleetwatch.actions.breaker import Breaker, BreakerConfig


@pytest.mark.parametrize(
    ("seen", "limit"),
    [(0, 0), (1, 1), (20, 1), (21, 2), (50, 2), (1000, 2)],
)
def test_the_limit_is_the_smaller_of_two_nodes_and_five_percent_rounded_up(
    seen: int, limit: int
) -> None:
    assert Breaker(BreakerConfig()).limit(seen) == limit


def test_the_percentage_is_rounded_after_floating_point_noise() -> None:
    # 5 % of 60 is 3.0000000000000004 in floating point: three nodes, not four
    assert Breaker(BreakerConfig(max_nodes=100)).limit(60) == 3


def test_a_node_already_acted_on_costs_nothing_more() -> None:
    breaker = Breaker(BreakerConfig())
    assert breaker.allows("n1", {"n1", "n2"}, 50)
    assert not breaker.allows("n3", {"n1", "n2"}, 50)
    assert breaker.allows("n3", {"n1"}, 50)
