"""The CUDA tier: tests marked `cuda` run on an NVIDIA GPU and are skipped elsewhere, saying why.

`scripts/gpu_acceptance.py` runs this tier as its second check; on a GPU it is also just
`python -m pytest tests/gpu -m cuda`.
"""

from __future__ import annotations

import pytest
from gpukit import cuda_missing_reason, int4_missing_reason, tiny_reference


def pytest_collection_modifyitems(config, items):
    reason = cuda_missing_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def needs_int4():
    reason = int4_missing_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tiny_cpu():
    return tiny_reference()
