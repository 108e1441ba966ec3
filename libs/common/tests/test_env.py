"""Environment reading: numbers fall back to their defaults, never raise."""

from __future__ import annotations

import os

import pytest

from corral_common.env import current_env, env_float, env_positive


@pytest.mark.parametrize("value, expected", [
    (None, 2.5), ("", 2.5), ("abc", 2.5), ("0", 0.0), ("-1", -1.0), (" '4.5' ", 4.5),
])
def test_env_float_reads_any_number(value: str | None, expected: float) -> None:
    env = {} if value is None else {"X": value}
    assert env_float(env, "X", 2.5) == expected


@pytest.mark.parametrize("value, expected", [(None, 20.0), ("x", 20.0), ("0", 20.0), ("-3", 20.0), ("0.5", 0.5)])
def test_env_positive_takes_the_default_for_zero_or_less(value: str | None, expected: float) -> None:
    env = {} if value is None else {"RPS": value}
    assert env_positive(env, "RPS", 20.0) == expected


def test_current_env_is_the_given_mapping_or_the_process_environment() -> None:
    given = {"A": "1"}
    assert current_env(given) is given
    assert current_env() is os.environ
