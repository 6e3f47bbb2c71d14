"""The CPU products through numpy's OpenBLAS (``cpu_blas``) and the
environment settings they need (``cpu_env``).

The OpenBLAS path is forced with ``MOSSFORMER_CPU_BLAS=openblas`` (read on
every call), so it runs here whatever kernels this machine's OpenBLAS
uses; ``auto`` would leave it off where ``OPENBLAS_CORETYPE`` names an
AVX2 core.
"""

import os
import subprocess
import sys

import pytest
import torch

from inference_helpers import fixture_difference
from speechbrain_mossformer import cpu_blas, cpu_env
from speechbrain_mossformer.lobes.models.mossformer import MossFormerWrapper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_openblas = pytest.mark.skipif(
    cpu_blas.openblas() is None, reason="numpy's OpenBLAS not found"
)


@pytest.fixture
def blas(monkeypatch, request):
    """Sets ``MOSSFORMER_CPU_BLAS`` to the test's parameter."""
    monkeypatch.setenv(cpu_blas.ENV_VARIABLE, request.param)
    cpu_blas._selected.cache_clear()
    yield request.param
    cpu_blas._selected.cache_clear()


def _operand(rows, cols, layout):
    """A [rows, cols] tensor laid out as ``layout`` says."""
    if layout == "transposed":
        return torch.randn(cols, rows).t()
    if layout == "padded":
        return torch.randn(rows, cols + 5)[:, :cols]
    return torch.randn(rows, cols)


@needs_openblas
@pytest.mark.parametrize("blas", ["openblas"], indirect=True)
@pytest.mark.parametrize("layout_a", ["plain", "transposed", "padded"])
@pytest.mark.parametrize("layout_b", ["plain", "transposed"])
@pytest.mark.parametrize("m, k, n", [(37, 19, 23), (1, 8, 5), (6, 8, 1)])
def test_openblas_products_match_torch(blas, layout_a, layout_b, m, k, n):
    a, b = _operand(m, k, layout_a), _operand(k, n, layout_b)
    bias = torch.randn(n)
    expected = a @ b
    with torch.inference_mode():
        # rows of ``out`` padded, and NaN where beta = 0 must not read
        out = torch.full((m, n + 3), float("nan"))[:, :n]
        cpu_blas.gemm(a, b, out)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        cpu_blas.gemm(a, b, out, accumulate=True)
        torch.testing.assert_close(out, 2 * expected, atol=1e-5, rtol=1e-5)
        cpu_blas.gemm(a, b, out, bias=bias)
        torch.testing.assert_close(out, expected + bias, atol=1e-5,
                                   rtol=1e-5)
        # the columns beyond the view are untouched
        assert torch.isnan(out.as_strided((m, 3), (n + 3, 1), n)).all()


@needs_openblas
@pytest.mark.parametrize("blas", ["openblas"], indirect=True)
def test_batched_products_accumulate_per_item(blas):
    a, b = torch.randn(4, 9, 7), torch.randn(4, 7, 11)
    out = torch.randn(4, 9, 11)
    expected = out + a @ b
    with torch.inference_mode():
        cpu_blas.batched_gemm(a, b, out, accumulate=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@needs_openblas
@pytest.mark.parametrize("blas", ["openblas"], indirect=True)
def test_autograd_and_other_dtypes_stay_with_torch(blas, monkeypatch):
    calls = []
    found = cpu_blas.openblas()
    monkeypatch.setattr(found, "sgemm", lambda *a: calls.append(a))
    a = torch.randn(5, 4, requires_grad=True)
    b = torch.randn(4, 3)
    out = torch.zeros(1, 5, 3)
    # with autograd: torch's baddbmm_, which records the graph
    cpu_blas.batched_gemm(a[None], b[None], out, accumulate=True)
    out.sum().backward()
    torch.testing.assert_close(a.grad, b.sum(1).expand(5, 4))
    with torch.inference_mode():
        x, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(
            4, 3, dtype=torch.float64)
        got = cpu_blas.gemm(x, y, torch.empty(5, 3, dtype=torch.float64))
        torch.testing.assert_close(got, x @ y)
    assert calls == []
    with torch.inference_mode():
        cpu_blas.gemm(torch.randn(5, 4), torch.randn(4, 3),
                      torch.empty(5, 3))
    assert len(calls) == 1


@pytest.mark.parametrize("blas", ["torch"], indirect=True)
def test_torch_choice_never_calls_openblas(blas, monkeypatch):
    monkeypatch.setattr(
        cpu_blas, "openblas", lambda: pytest.fail("OpenBLAS looked up"))
    with torch.inference_mode():
        out = cpu_blas.gemm(torch.eye(3), torch.ones(3, 2),
                            torch.empty(3, 2))
    assert torch.equal(out, torch.ones(3, 2))
    assert cpu_blas.describe() == "torch's own BLAS"


@pytest.mark.parametrize("blas", ["fast"], indirect=True)
def test_unknown_choice_names_the_variable(blas):
    with pytest.raises(ValueError, match="MOSSFORMER_CPU_BLAS='fast'"):
        cpu_blas.gemm(torch.eye(2), torch.eye(2), torch.empty(2, 2))


@pytest.mark.parametrize("blas", ["auto"], indirect=True)
@pytest.mark.parametrize(
    "vendor, core, policy, selected",
    [
        ("AuthenticAMD", "SkylakeX", "PASSIVE", True),
        ("AuthenticAMD", "Haswell", "PASSIVE", False),
        ("AuthenticAMD", "SkylakeX", "", False),
        ("GenuineIntel", "SkylakeX", "passive", False),
    ],
)
def test_auto_takes_openblas_only_where_it_was_faster(
    blas, monkeypatch, vendor, core, policy, selected
):
    found = cpu_blas._OpenBLAS("lib", None, None, None, None, core)
    monkeypatch.setattr(cpu_blas, "openblas", lambda: found)
    monkeypatch.setattr(
        cpu_blas, "cpu_vendor_and_flags", lambda: (vendor, frozenset()))
    monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    assert (cpu_blas._selected("auto") is found) == selected


@needs_openblas
@pytest.mark.parametrize("blas", ["openblas"], indirect=True)
def test_model_outputs_match_with_either_library(blas, monkeypatch):
    model = MossFormerWrapper(
        encoder_kernel_size=8, encoder_out_nchannels=32,
        masknet_out_channels=16, num_blocks=2, group_size=16,
        query_key_dim=8,
    ).eval()
    # two items: per-item products, padded rows, a last short group
    mix = torch.randn(2, 1203)
    with torch.inference_mode():
        fast = model(mix)
        monkeypatch.setenv(cpu_blas.ENV_VARIABLE, "torch")
        cpu_blas._selected.cache_clear()
        reference = model(mix)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


@needs_openblas
@pytest.mark.parametrize("blas", ["openblas"], indirect=True)
@pytest.mark.parametrize("name", ["tiny-2spk", "full-width-2blocks"])
def test_official_fixtures_hold_with_openblas(blas, name, tmp_path):
    assert fixture_difference(name, tmp_path / name) <= 1e-5


def _cpuinfo(tmp_path, vendor, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nvendor_id\t: Other\nflags\t\t: none\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "vendor, flags, environ, expected",
    [
        ("AuthenticAMD", "fma avx2 avx512f", {}, {"OMP_WAIT_POLICY":
                                                  "PASSIVE"}),
        ("AuthenticAMD", "fma avx2 avx512f",
         {"OPENBLAS_CORETYPE": "Haswell"}, {}),
        ("AuthenticAMD", "fma avx2 avx512f",
         {"OPENBLAS_CORETYPE": "skylakex"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ("AuthenticAMD", "fma avx2", {}, {}),
        ("GenuineIntel", "fma avx2 avx512f", {}, {}),
    ],
)
def test_fast_cpu_environment_follows_the_cpu(
    tmp_path, vendor, flags, environ, expected
):
    info = _cpuinfo(tmp_path, vendor, flags)
    assert cpu_env.cpu_vendor_and_flags(info)[0] == vendor
    assert cpu_env.fast_cpu_environment(info, environ) == expected


def test_apply_keeps_user_settings_and_needs_an_early_call(monkeypatch):
    monkeypatch.setattr(
        cpu_env, "fast_cpu_environment",
        lambda environ=None: {"OMP_WAIT_POLICY": "PASSIVE", "X_NEW": "1"})
    env = {"OMP_WAIT_POLICY": "active"}
    assert cpu_env.apply_fast_cpu_environment(env, modules={}) == {
        "X_NEW": "1"}
    assert env == {"OMP_WAIT_POLICY": "active", "X_NEW": "1"}
    env = {}
    assert cpu_env.apply_fast_cpu_environment(
        env, modules={"numpy": object()}) == {}
    assert env == {}


def _python(code, env=None):
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True,
        text=True, env=env, timeout=300,
    )


def test_cli_applies_the_settings_before_loading_torch():
    # a stand-in setting, so that the test means the same on every CPU
    result = _python(
        "import os, sys\n"
        "from speechbrain_mossformer import cpu_env\n"
        "cpu_env.fast_cpu_environment = "
        "lambda environ=None: {'MOSSFORMER_TEST_MARK': 'set'}\n"
        "import speechbrain_mossformer.cli\n"
        "print(os.environ.get('MOSSFORMER_TEST_MARK'))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "set"


def test_cpu_env_command_prints_and_starts_programs():
    env = dict(os.environ, OMP_WAIT_POLICY="active")
    printed = subprocess.run(
        [sys.executable, "-m", "speechbrain_mossformer.cpu_env", "--print"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    assert printed.returncode == 0, printed.stderr
    expected = cpu_env.fast_cpu_environment(environ=env)
    assert printed.stdout.split() == [f"{k}={v}" for k, v in
                                      expected.items()]
    started = subprocess.run(
        [sys.executable, "-m", "speechbrain_mossformer.cpu_env", "-c",
         "import os, sys; print(os.environ['OMP_WAIT_POLICY']); "
         "sys.exit(3)"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    # the user's own setting is kept, and the program's exit status too
    assert started.returncode == 3, started.stderr
    assert started.stdout.strip() == "active"
    missing = subprocess.run(
        [sys.executable, "-m", "speechbrain_mossformer.cpu_env",
         "no_such_script.py"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode == 2
    assert "no such script: no_such_script.py" in missing.stderr
