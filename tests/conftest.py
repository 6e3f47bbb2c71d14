"""Every test starts from the same global state, whatever ran before it.

* torch's random generator is seeded (0): a module built before a test
  seeds (e.g. ``perturbed`` in ``test_fast_path``) got the weights left
  by the tests before it, so its result depended on the order;
* torch's thread count is put back after each test: the pruning
  experiment sets one thread, which every later in-process test inherited.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def same_global_state():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
