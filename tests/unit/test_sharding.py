"""dev/test's split of the default run into two processes (tests/support/sharding.py)."""

from __future__ import annotations

import pytest

from tests.support import sharding


def test_heaviest_files_first_each_to_the_lightest_shard() -> None:
    weights = {"a.py": 90.0, "b.py": 90.0, "c.py": 180.0, "d.py": 0.2, "e.py": 15.0}
    shard = sharding.assign(weights, 2)
    assert shard["c.py"] == 1                        # heaviest first, to shard 1
    assert shard["a.py"] == shard["b.py"] == 2       # 90 + 90 against 180
    load = {1: 0.0, 2: 0.0}
    for name, i in shard.items():
        load[i] += weights[name]
    assert abs(load[1] - load[2]) <= 15.2
    assert sharding.assign(weights, 1) == dict.fromkeys(weights, 1)


def test_every_process_computes_the_same_split_whatever_the_order() -> None:
    weights = {f"t{i}.py": float(i % 3) for i in range(40)}
    reordered = dict(reversed(list(weights.items())))
    assert sharding.assign(weights, 3) == sharding.assign(reordered, 3)


def test_weights_follow_the_markers() -> None:
    assert sharding.weight(["vm", "slow"]) == sharding.VM_SECONDS
    assert sharding.weight(["slow", "parametrize"]) == sharding.SLOW_SECONDS
    assert sharding.weight([]) == sharding.OTHER_SECONDS


@pytest.mark.parametrize("bad", ["", "0/2", "3/2", "1/0", "a/b", "1/2/3", " 1 /2"])
def test_the_shard_variable_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="expected I/N"):
        sharding.parse(bad)
    assert sharding.parse("2/2") == (2, 2)
