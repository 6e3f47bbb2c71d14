"""Every test starts from the same global state, whatever ran before it;
the summary says when the official-code fixtures were missing.

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


def pytest_terminal_summary(terminalreporter):
    """Says loudly when the tests against the official code did not run
    (the fixtures live beside the checkout, in ``../shared``)."""
    missing = [
        report for report in terminalreporter.stats.get("skipped", [])
        if "official fixtures not found" in str(report.longrepr)
    ]
    if missing:
        terminalreporter.write_line(
            f"WARNING: {len(missing)} tests skipped: the official-code "
            "fixtures are not at ../shared/fixtures/modelscope_mossformer, "
            "so nothing was compared with the official implementation",
            yellow=True, bold=True,
        )
