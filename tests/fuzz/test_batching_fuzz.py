"""The batching property under fuzzing: every answer a batching version gives equals the
answer to the request alone (tests/serving/isolation.py), on the repository of
tests/serving/test_batch_isolation.py, with the profile's budget (`make fuzz`: 10x)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from tests.fuzz.profiles import TIMEOUT_S, budget
from tests.serving import isolation
from tests.serving.isolation import Mix
from tests.serving.test_batch_isolation import BATCHINGS, COLSUM, LOGISTIC, ROWWISE, _check
from tests.serving.test_batch_isolation import loaded as loaded  # the module's fixture

pytestmark = [pytest.mark.timeout(TIMEOUT_S * 3), pytest.mark.slow]


@budget(8)
@given(mix=isolation.mixes(LOGISTIC, max_rows=20))
@pytest.mark.parametrize("version", sorted(BATCHINGS))
def test_batched_answers_equal_unbatched_ones(loaded: Any, version: str, mix: Mix) -> None:
    assert _check(loaded, "logistic", version, mix) == []


@budget(8)
@given(mix=isolation.mixes(ROWWISE, max_rows=12, widths=(1, 2, 3, 5), disagree=True))
def test_batched_answers_equal_unbatched_ones_for_mixed_shapes(loaded: Any, mix: Mix) -> None:
    assert _check(loaded, "rowwise", "1", mix) == []


@budget(8)
@given(mix=isolation.mixes(COLSUM, max_rows=8, widths=(1, 2, 3, 4, 8)))
def test_outputs_that_are_not_batch_major_are_never_split(loaded: Any, mix: Mix) -> None:
    assert _check(loaded, "colsum", "1", mix) == []
