"""Deterministic training (MQARBENCH_DETERMINISTIC=1, `--deterministic`): the fixed-order short-conv
backward equals autograd's, the switch picks deterministic kernels and refuses the ones that are
not, and on a GPU the Mamba family's gradients repeat bit for bit."""

from __future__ import annotations

import json

import pytest
import torch

from mqarbench.cli import main
from mqarbench.errors import UserError
from mqarbench.kernels import causal_conv as cc
from mqarbench.kernels import selective_scan as ss
from mqarbench.kernels.determinism import deterministic_chosen, make_deterministic
from mqarbench.kernels.global_selection import global_selection_inner_impl
from mqarbench.runner.executors import kernel_environment
from test_runner_fixtures import STANDIN, mini_env, mini_tasks  # noqa: F401

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture
def deterministic_env(monkeypatch):
    """MQARBENCH_DETERMINISTIC and cuBLAS's setting restored after the test, and torch's mode."""
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "0")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.delenv("MQARBENCH_SELECTIVE_SCAN", raising=False)
    yield monkeypatch
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True


def conv_grads(conv, x, weight, bias, activation, seed=1):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    out = conv(*leaves, activation=activation)
    # bf16-representable, so a bf16 output and an fp64 one are probed with the same values
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    probe = probe.bfloat16().to(out)
    (out * probe).sum().backward()
    return out.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("width,activation,with_bias,channels_last", [
    (4, "silu", True, False), (4, None, True, False), (3, "swish", False, False), (2, "silu", True, True),
    (4, None, False, True)])
def test_fixed_order_conv_backward_equals_autograd(width, activation, with_bias, channels_last):
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(3, 16, 11, generator=gen, dtype=torch.float64)  # (B, D, L)
    if channels_last:  # (B, D, L) with unit stride along D, as ShortConv passes it
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    weight = torch.randn(16, width, generator=gen, dtype=torch.float64)
    bias = torch.randn(16, generator=gen, dtype=torch.float64) if with_bias else None
    want_out, want = conv_grads(cc.causal_conv1d_ref, x, weight, bias, activation)
    got_out, got = conv_grads(cc.fixed_order_conv(cc.causal_conv1d_ref), x, weight, bias, activation)
    torch.testing.assert_close(got_out, want_out, rtol=0, atol=0)
    for name, g, w in zip(("x", "weight", "bias"), got, want):
        assert (g is None) == (w is None), name
        if w is not None:
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=name)


def test_fixed_order_conv_keeps_dtypes():
    """bf16 activations with fp32 weights (the model under autocast): x's gradient in bf16, the
    weight's and bias's in fp32, close to the fp64 computation."""
    def mixed(x, weight, bias=None, activation=None):  # as causal_conv1d: fp32 inside, out in x's dtype
        return cc.causal_conv1d_ref(x.float(), weight, bias, activation).to(x.dtype)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 9, generator=gen)
    weight, bias = torch.randn(8, 4, generator=gen), torch.randn(8, generator=gen)
    _, (dx, dw, db) = conv_grads(cc.fixed_order_conv(mixed), x.bfloat16(), weight, bias, "silu")
    assert (dx.dtype, dw.dtype, db.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    _, (_, dw64, db64) = conv_grads(cc.causal_conv1d_ref, x.bfloat16().double(), weight.double(), bias.double(), "silu")
    # summed in fp32 from an fp32 pre-activation (not one rounded to bf16 before silu's slope)
    for got, exact in ((dw, dw64), (db, db64)):
        assert (got.double() - exact).abs().max() <= 1e-5 * exact.abs().max()


def test_switch_picks_deterministic_kernels_and_refuses_the_others(deterministic_env):
    monkeypatch = deterministic_env
    # the CUDA paths as a GPU machine would see them: the reference conv stands in for causal_conv1d's
    monkeypatch.setattr(cc, "causal_conv1d_fn", cc.causal_conv1d_ref)
    monkeypatch.setattr(cc, "_FIXED_ORDER_FAST", cc.fixed_order_conv(cc.causal_conv1d_ref))
    assert cc.conv_impl(CUDA)[1].path == "causal_conv1d.causal_conv1d_fn"
    assert not ss.triton_scan_chosen()
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "1")
    assert deterministic_chosen()
    conv, choice = cc.conv_impl(CUDA)
    assert conv is cc._FIXED_ORDER_FAST and choice == cc.KernelChoice(
        cc._FIXED_ORDER_PATH, True)
    assert cc.conv_impl(CPU)[1].path == "reference.causal_conv1d_ref"  # the CPU is deterministic already
    assert ss.triton_scan_chosen() and ss.inner_impl(CUDA)[0] is None
    assert global_selection_inner_impl(CUDA)[0] is None  # it holds causal_conv1d's and mamba_ssm's backward
    with pytest.raises(UserError, match="grouped scan is mamba_ssm's.*drop --stack"):
        ss.grouped_scan_impl(CUDA)
    monkeypatch.setenv("MQARBENCH_SELECTIVE_SCAN", "mamba_ssm")
    with pytest.raises(UserError, match="MQARBENCH_SELECTIVE_SCAN=mamba_ssm with MQARBENCH_DETERMINISTIC=1"):
        ss.scan_impl(CUDA)
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "yes")
    with pytest.raises(UserError, match="MQARBENCH_DETERMINISTIC='yes': use 1"):
        cc.conv_impl(CPU)


def test_make_deterministic_turns_on_torchs_mode_only_on_cuda_when_chosen(deterministic_env):
    make_deterministic(CUDA)
    assert not torch.are_deterministic_algorithms_enabled()  # MQARBENCH_DETERMINISTIC=0
    deterministic_env.delenv("MQARBENCH_DETERMINISTIC")  # the default
    make_deterministic(CPU)
    assert not torch.are_deterministic_algorithms_enabled()  # a CPU's ops need no switch
    make_deterministic(CUDA)
    assert torch.are_deterministic_algorithms_enabled()


def test_torchs_refusal_becomes_one_line_naming_the_fix(mini_env, deterministic_env, monkeypatch, capsys):
    from mqarbench.cli import run_cmd
    from mqarbench.kernels.determinism import refusal

    assert refusal(RuntimeError("CUDA out of memory")) is None

    def refuse(args):  # torch's words, as a model's backward would raise them
        raise RuntimeError("scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
                           "'torch.use_deterministic_algorithms(True)'. You can turn off determinism ...")

    monkeypatch.setattr(run_cmd, "cmd_run", refuse)
    assert main(["run", "--model", STANDIN, "--suite", "positional", "--preset", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scatter_add_cuda_kernel has no deterministic CUDA implementation" in err
    assert "--no-deterministic" in err
    monkeypatch.setattr(run_cmd, "cmd_run", lambda args: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):  # any other error is not hidden
        main(["run", "--model", STANDIN, "--suite", "positional", "--preset", "tiny"])


def test_deterministic_is_the_default_unless_mamba_ssms_scan_is_named(deterministic_env):
    deterministic_env.delenv("MQARBENCH_DETERMINISTIC")
    assert deterministic_chosen() and ss.triton_scan_chosen()
    deterministic_env.setenv("MQARBENCH_SELECTIVE_SCAN", "mamba_ssm")  # asked for by name: no error
    assert not deterministic_chosen() and not ss.triton_scan_chosen()


def test_kernel_environment_sends_only_the_kernel_variables(deterministic_env):
    from mqarbench.kernels.determinism import choose_deterministic

    choose_deterministic()  # as `mqarbench run` does
    deterministic_env.setenv("MQARBENCH_LONG_CONV", "fft")
    deterministic_env.setenv("MQARBENCH_DATA_DIR", "/elsewhere")
    env = kernel_environment()
    assert env["MQARBENCH_DETERMINISTIC"] == "1" and env["MQARBENCH_LONG_CONV"] == "fft"
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and "MQARBENCH_DATA_DIR" not in env
    assert env["TRITON_CACHE_AUTOTUNING"] == "1"  # autotuned tiles kept for every later process


def test_run_flag_records_determinism_and_refuses_stack(mini_env, deterministic_env, capsys):
    common = ["--suite", "positional", "--preset", "tiny", "--epochs", "1", "--lr", "3e-3",
              "--data-dir", "data", "--no-site"]
    assert main(["run", "--model", STANDIN, *common, "--stack", "--deterministic"]) == 2
    assert "--deterministic with --stack" in capsys.readouterr().err
    deterministic_env.setenv("MQARBENCH_SELECTIVE_SCAN", "mamba_ssm")
    assert main(["run", "--model", STANDIN, *common, "--out", "refused", "--deterministic"]) == 2
    assert "MQARBENCH_SELECTIVE_SCAN=mamba_ssm with MQARBENCH_DETERMINISTIC=1" in capsys.readouterr().err
    assert not (mini_env / "refused").exists() and not (mini_env / "data").exists()  # refused before any work
    deterministic_env.delenv("MQARBENCH_SELECTIVE_SCAN")
    deterministic_env.delenv("MQARBENCH_DETERMINISTIC")  # the default from here on
    assert main(["run", "--model", STANDIN, *common, "--out", "plain", "--no-deterministic"]) == 0
    deterministic_env.delenv("MQARBENCH_DETERMINISTIC")  # a command leaves its choice for its workers
    assert main(["run", "--model", STANDIN, *common, "--out", "det"]) == 0

    def records(out):
        return [json.loads(p.read_text()) for p in (mini_env / out / "runs").glob("*/run.json")]

    plain, det = records("plain"), records("det")
    assert plain and not any(r["deterministic"] for r in plain)
    assert det and all(r["deterministic"] for r in det)
    # the same run ids: determinism changes how sums are ordered, not what is trained
    assert sorted(r["run_id"] for r in plain) == sorted(r["run_id"] for r in det)
    capsys.readouterr()
    deterministic_env.delenv("MQARBENCH_DETERMINISTIC")
    assert main(["run", "--model", STANDIN, *common, "--out", "stacked", "--stack"]) == 0
    assert "note: --stack trains without deterministic kernels" in capsys.readouterr().err
    assert not any(r["deterministic"] for r in records("stacked"))


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.skipif(cc.causal_conv1d_fn is None, reason="needs causal_conv1d")
def test_fixed_order_conv_matches_causal_conv1d_and_repeats_on_gpu():
    """Against the fp64 computation, the fixed-order gradients are as close as causal_conv1d's own
    (x's in bf16, the weight's and bias's summed in fp32), and they repeat bit for bit."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 256, 200, generator=gen).bfloat16()
    weight, bias = torch.randn(256, 4, generator=gen), torch.randn(256, generator=gen)
    _, exact = conv_grads(cc.causal_conv1d_ref, x.double(), weight.double(), bias.double(), "silu")
    on_gpu = (x.cuda(), weight.cuda(), bias.cuda())
    want_out, want = conv_grads(cc.causal_conv1d_fn, *on_gpu, "silu")
    fixed = cc.fixed_order_conv(cc.causal_conv1d_fn)
    got_out, got = conv_grads(fixed, *on_gpu, "silu")
    torch.testing.assert_close(got_out, want_out, rtol=0, atol=0)
    for name, g, w, e in zip(("x", "weight", "bias"), got, want, exact):
        ours, theirs = ((t.double().cpu() - e).abs().max().item() for t in (g, w))
        scale = e.abs().max().item()
        assert ours <= max(1.5 * theirs, 1e-5 * scale), (name, ours, theirs)
        assert ours <= (1e-2 if name == "x" else 1e-4) * scale, (name, ours, scale)
    again = conv_grads(fixed, *on_gpu, "silu")[1]
    assert all(torch.equal(a, b) for a, b in zip(got, again))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("model", ["mamba", "global_mamba"])
def test_mamba_family_gradients_repeat_bit_for_bit_on_gpu(model, deterministic_env):
    from mqarbench.kernels import kernel_paths
    from mqarbench.models.registry import load_adapter
    from mqarbench.runner.evaluate import autocast

    deterministic_env.setenv("MQARBENCH_DETERMINISTIC", "1")
    make_deterministic(CUDA)
    torch.manual_seed(0)
    net = load_adapter(model).build("small", 512, 128).cuda()
    paths = kernel_paths(net)
    assert paths["selective_scan"] == "triton.selective_scan_triton", paths
    assert paths["causal_conv1d"] == "causal_conv1d.causal_conv1d_fn+triton.conv_backward_triton", paths
    ids = torch.randint(0, 512, (16, 128), generator=torch.Generator().manual_seed(1)).cuda()

    def grads():
        net.zero_grad(set_to_none=True)
        with autocast(ids.device):
            loss = torch.nn.functional.cross_entropy(net(ids).flatten(0, 1).float(), ids.flatten())
        loss.backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    first, second = grads(), grads()
    assert [n for n in first if not torch.equal(first[n], second[n])] == []
