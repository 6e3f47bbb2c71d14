"""MossFormer as SpeechBrain components.

MossFormer ("MossFormer: Pushing the Performance Limit of Monaural Speech
Separation using Gated Single-head Transformer with Convolution-augmented Joint
Self-Attentions", Zhao & Ma, ICASSP 2023) separates speech by masking the
output of a learned convolutional encoder, like SepFormer. Its mask network
runs a stack of *MossFormer blocks* over the whole frame sequence. Each block
is a gated single-head attention unit (FLASH style):

    token shift -> FFConvM (U, V and the shared Q/K) -> offset-scale into four
    query/key heads -> rotary positions -> joint attention (quadratic
    attention inside groups of frames + linear attention over the whole
    sequence) -> three element-wise gates -> FFConvM -> residual.

Every module below is written here and reproduces the official ModelScope
implementation number for number (see ``speechbrain_mossformer.convert`` for
loading the official checkpoints). The mask network has the contract of
SpeechBrain's ``Dual_Path_Model``: encoder output ``[B, N, L]`` in, masks
``[num_spks, B, N, L]`` out, so it drops into any SepFormer yaml next to
SpeechBrain's own ``dual_path.Encoder`` and ``dual_path.Decoder``.

The computation is arranged for speed without changing the numbers (beyond
float rounding; ``tests/test_fast_path.py`` checks outputs and gradients
against a plain statement of the model):

* depthwise convolutions read the channels-last activations in place, with
  the residual folded into the kernel (``residual_depthwise_conv``);
* ``to_hidden`` and ``to_qk`` share their input and run as one matmul
  (``shared_input_ffconvm``); the narrowing ``to_out`` scales its output
  rows instead of its input rows;
* the four query/key heads are stored head-major, so each is contiguous,
  and without autograd the rotary positions turn each feature pair in
  place as one complex product;
* the local attention adds its products straight into the global
  attention's output, group by group, with no zero padding (the padded
  formulation is kept for tracing, i.e. ONNX export);
* without autograd (``torch.no_grad``/``torch.inference_mode``) the gates,
  activations, rotary positions and residuals work in place, the blocks of a
  stack share their large buffers (``Scratch``) and the depthwise
  convolutions write piece by piece into those buffers: on Linux a fresh
  large tensor is page-faulted in on every allocation, which cost several
  percent of the forward pass. The mask net's head then runs channels-last
  (its 1x1 convolutions as matrix products, ``masks_channels_last``) and the
  transposed-convolution decoder as one matrix product and an overlap-add
  for all sources (``decode_sources``): for narrow (pruned) models these
  layers cost as much as the blocks. With autograd (training) the fused
  projections, the residual depthwise convolution (with its own backward
  pass on the CPU) and the unpadded local attention are used too, but
  nothing works in place and no buffers are shared;
* without autograd, the large matrix products go through
  ``speechbrain_mossformer.cpu_blas``, which runs them in numpy's OpenBLAS
  on AMD CPUs with AVX-512 (about twice MKL's speed there) and in torch
  everywhere else.

Authors
 * speechbrain-mossformer contributors 2026
"""

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from speechbrain_mossformer.cpu_blas import batched_gemm, gemm
from speechbrain_mossformer.cpu_blas import in_place_ok as _in_place_ok
from speechbrain_mossformer.cpu_blas import plain_eager as _plain_eager

__all__ = [
    "Scratch",
    "ScaleNorm",
    "residual_depthwise_conv",
    "depthwise_kernel_grad",
    "ResidualDepthwiseConvFunction",
    "ConvModule",
    "FFConvM",
    "shared_input_ffconvm",
    "OffsetScale",
    "RotaryEmbedding",
    "ROTARY_MAX_DIM",
    "rotary_width",
    "rotary_for",
    "full_precision_inv_freq",
    "ScaledSinuEmbedding",
    "pad_time",
    "token_shift",
    "MossFormerBlock",
    "MossFormerStack",
    "MossFormerMaskNet",
    "MossFormerWrapper",
    "group_norm_channels_last",
    "group_norm_two_pass",
    "check_input_length",
    "separate_with_modules",
    "decode_sources",
    "count_parameters",
]


def _complex_view_ok(x, dim):
    """True when the first ``dim`` features of ``x`` [..., D] can be viewed
    in place as ``dim / 2`` complex numbers: eager mode (the ONNX exporter
    has no complex type), float32, the last axis contiguous and every other
    stride and the storage offset even.

    Example
    -------
    >>> _complex_view_ok(torch.zeros(4, 3, 8), 4)
    True
    >>> _complex_view_ok(torch.zeros(4, 3, 7), 4)
    False
    """
    return (
        not torch.jit.is_tracing()
        and x.dtype == torch.float32
        and x.stride(-1) == 1
        and x.storage_offset() % 2 == 0
        and all(stride % 2 == 0 for stride in x.stride()[:-1])
        and dim % 2 == 0
    )


def _positive_int(name, value, minimum=1):
    """``value`` as an ``int`` (Python or NumPy integers, not bools), or a
    ``ValueError`` naming the argument when it is not one of at least
    ``minimum``.

    Example
    -------
    >>> _positive_int("num_spks", 2)
    2
    >>> _positive_int("num_spks", 0)
    Traceback (most recent call last):
      ...
    ValueError: num_spks must be an integer of at least 1, got 0
    """
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise ValueError(
            f"{name} must be an integer of at least {minimum}, got {value!r}"
        )
    return number


def _hooked(module):
    """True when ``module`` itself has a forward hook or pre-hook."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _stock(*pairs):
    """True when each ``(module, cls)`` pair has ``type(module) is cls``.

    The fast paths read the weights of these layers and skip calling
    them; a replaced layer (an ``nn.Linear`` subclass with an adapter, a
    dynamically quantized ``Linear``, ...) must be called instead.
    """
    return all(type(module) is cls for module, cls in pairs)


def _hooks_inside(module):
    """True when a forward hook or pre-hook (global, or on a submodule of
    ``module``, ``module`` itself excluded) is registered, or, with
    autograd on, a backward hook or pre-hook.

    The fast paths skip some submodule calls (fused projections, the
    depthwise convolution run from its weight) and change some outputs in
    place; with such a hook ``module`` runs its plain path instead, which
    calls every submodule and changes none of their outputs, so the hooks
    fire and what they keep stays valid.
    """
    from torch.nn.modules import module as torch_module

    def registered(name):
        # torch's private registries of global hooks (torch 2.x); should one
        # disappear, assume it holds hooks and take the plain path
        return getattr(torch_module, name, True)

    # backward hooks fire only for the submodules that are called
    backward = torch.is_grad_enabled()
    if (
        registered("_global_forward_hooks")
        or registered("_global_forward_pre_hooks")
        or backward
        and (
            registered("_global_backward_hooks")
            or registered("_global_backward_pre_hooks")
        )
    ):
        return True
    return any(
        _hooked(m)
        or backward
        and bool(m._backward_hooks or m._backward_pre_hooks)
        for m in module.modules()
        if m is not module
    )


class ScaleNorm(nn.Module):
    """Scale normalisation: ``x / max(||x|| / sqrt(dim), eps) * g``.

    One learned scalar gain ``g`` (initialised to 1); the norm is taken over
    the last (feature) dimension.

    Arguments
    ---------
    dim : int
        Size of the feature dimension.
    eps : float
        Lower bound of the root-mean-square norm.

    Example
    -------
    >>> norm = ScaleNorm(8)
    >>> x = torch.randn(2, 5, 8)
    >>> y = norm(x)
    >>> y.shape
    torch.Size([2, 5, 8])
    >>> torch.allclose(y.pow(2).mean(-1), torch.ones(2, 5))
    True
    """

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x):
        """Normalises ``x`` over its last dimension.

        Arguments
        ---------
        x : torch.Tensor
            Features [..., dim].

        Returns
        -------
        torch.Tensor
            ``x / rms(x) * g``, [..., dim].
        """
        if x.dtype == torch.float16:
            # [..., D]: g / rms can pass float16's 65504 (rms clamped at
            # eps = 1e-5 for a near-silent frame), x / rms * g cannot
            return x / self.rms(x) * self.g
        # [..., 1]: one factor per frame, so ``x`` is read and written once
        factor = self.g / self.rms(x)
        # [..., D]
        return x * factor

    def rms(self, x):
        """The clamped root-mean-square norm of ``x``.

        Arguments
        ---------
        x : torch.Tensor
            Features [..., dim].

        Returns
        -------
        torch.Tensor
            ``max(||x|| / sqrt(dim), eps)``, [..., 1].
        """
        # [..., D] -> [..., 1]
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return (norm * self.scale).clamp(min=self.eps)


# Values (batch x channels x frames) per piece when the depthwise convolution
# writes into a given buffer: each piece's output (4 MiB) is still in cache
# when it is copied, and narrow layers still get long pieces (per-call
# overhead, not memory, is what costs there).
CONV_CHUNK_VALUES = 1 << 20


def residual_depthwise_conv(x, weight, channels_last=None, out=None):
    """Computes ``x + DWConv(x)`` along time for a channels-last ``x``.

    Two ways, same numbers up to float rounding:

    * channels-last (default on CPU): ``x`` [B, T, C] is read in place as
      a ``[B, C, 1, T]`` image in channels-last memory, which oneDNN's
      depthwise kernel consumes without any transpose or copy, and the
      residual is folded into the kernel (``1`` added to the centre tap), so
      one pass over the activations does both. About 7x faster than a
      ``conv1d`` on the transposed tensor on a 2-core CPU. Traced for ONNX
      export, this is a ``1 x K`` 2-D ``Conv`` node with the folded kernel
      (ONNX has no strides: the transposes become copies), which ONNX
      Runtime runs faster than a 1-D ``Conv`` and the residual ``Add``.
    * ``conv1d`` on the transposed ``[B, C, T]`` view plus the residual, as
      the official code does (default on other devices, and for anything
      but float32 outside autocast: torch 2.14's CPU depthwise ``conv2d``
      in bf16 on channels-last memory hangs, e.g. under
      ``--eval_precision=bf16``).

    Arguments
    ---------
    x : torch.Tensor
        Input [B, T, C] (contiguous for the fast path to avoid a copy).
    weight : torch.Tensor
        Depthwise kernels [C, 1, K], K odd, "same" zero padding.
    channels_last : bool, optional
        Force one of the two ways; ``None`` picks channels-last on CPU.
    out : torch.Tensor, optional
        Inference only (channels-last way): a contiguous [B, T, C] tensor,
        not overlapping ``x``, to write the result into. The convolution
        then runs over pieces of frames (each with
        its 2 x K//2 frames of context), so no tensor of the whole output
        size is allocated: for long inputs such an allocation is served
        by fresh, page-faulting memory every time. A piece holds about
        ``CONV_CHUNK_VALUES`` values (512 frames of 2048 channels).

    Returns
    -------
    torch.Tensor
        ``x + DWConv(x)`` [B, T, C] (``out`` when given).

    Example
    -------
    >>> x, w = torch.randn(2, 30, 6), torch.randn(6, 1, 5)
    >>> fast = residual_depthwise_conv(x, w, channels_last=True)
    >>> ref = residual_depthwise_conv(x, w, channels_last=False)
    >>> torch.allclose(fast, ref, atol=1e-5)
    True
    >>> into = residual_depthwise_conv(x, w, out=torch.empty(2, 30, 6))
    >>> torch.allclose(into, ref, atol=1e-5)
    True
    """
    channels, _, kernel_size = weight.shape
    if channels_last is None:
        channels_last = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )
    if not channels_last:
        # [B, T, C] -> [B, C, T] -> depthwise conv -> [B, T, C]
        y = F.conv1d(
            x.transpose(1, 2), weight, padding=kernel_size // 2, groups=channels
        ).transpose(1, 2)
        # [B, T, C]
        return x + y
    if out is None and _records_gradients(x, weight):
        # [B, T, C]: the same forward pass, with a fast backward pass
        return ResidualDepthwiseConvFunction.apply(x, weight)
    # [C, 1, 1, K]: the identity (residual) folded into the centre tap
    kernel = weight.clone()
    kernel[:, :, kernel_size // 2] += 1.0
    kernel = kernel.unsqueeze(2)
    # [B, T, C] viewed as [B, C, 1, T] (channels-last memory, no copy)
    image = x.transpose(1, 2).unsqueeze(2)
    half = kernel_size // 2
    if out is None:
        # [B, C, 1, T], channels-last memory
        y = F.conv2d(image, kernel, padding=(0, half), groups=channels)
        # [B, T, C], contiguous
        return y.squeeze(2).transpose(1, 2)
    frames = x.shape[1]
    piece = max(1, CONV_CHUNK_VALUES // (x.shape[0] * channels))
    for start in range(0, frames, piece):
        stop = min(frames, start + piece)
        # [B, C, 1, <= chunk + 2 half]: the piece and its context; zero
        # padding stands in for the context only beyond the sequence ends
        first, last = max(0, start - half), min(frames, stop + half)
        y = F.conv2d(
            image[..., first:last], kernel, padding=(0, half), groups=channels
        )
        # [B, stop - start, C]
        out[:, start:stop].copy_(
            y[..., start - first : stop - first].squeeze(2).transpose(1, 2)
        )
    return out


def _records_gradients(*tensors):
    """True when autograd will record an operation on ``tensors`` in plain
    eager mode (see ``_plain_eager``).

    Example
    -------
    >>> w = torch.ones(2, requires_grad=True)
    >>> _records_gradients(torch.ones(2), w)
    True
    >>> with torch.no_grad():
    ...     _records_gradients(torch.ones(2), w)
    False
    """
    return (
        torch.is_grad_enabled()
        and any(t.requires_grad for t in tensors)
        and _plain_eager()
    )


# Values of the [B, frames, K, C] product that ``depthwise_kernel_grad``
# forms at a time (about 2.4 MB of float32: it stays in the L2 cache).
KERNEL_GRAD_CHUNK_VALUES = 600_000


def depthwise_kernel_grad(x, grad, kernel_size):
    """Gradient of ``sum(grad * DWConv(x))`` with respect to the kernels.

    For the depthwise convolution of ``residual_depthwise_conv`` ("same"
    zero padding, one filter per channel), the gradient of tap ``k`` of
    channel ``c`` is ``sum over b, t of grad[b, t, c] * x[b, t + k - K//2,
    c]``. It is summed over pieces of frames whose ``K``-frame windows are
    views of the padded input (no copy), so each product stays in cache.

    Arguments
    ---------
    x : torch.Tensor
        The convolution's input [B, T, C].
    grad : torch.Tensor
        The gradient of its output [B, T, C].
    kernel_size : int
        Odd filter length K.

    Returns
    -------
    torch.Tensor
        The kernels' gradient [C, 1, K].

    Example
    -------
    >>> x, g = torch.randn(2, 30, 6), torch.randn(2, 30, 6)
    >>> w = torch.randn(6, 1, 5, requires_grad=True)
    >>> y = F.conv1d(x.transpose(1, 2), w, padding=2, groups=6)
    >>> y.backward(g.transpose(1, 2))
    >>> torch.allclose(depthwise_kernel_grad(x, g, 5), w.grad, atol=1e-5)
    True
    """
    half = kernel_size // 2
    batch, frames, channels = grad.shape
    # [B, T + 2 half, C]
    padded = F.pad(x, (0, 0, half, half))
    stride_b, stride_t, stride_c = padded.stride()
    total = grad.new_zeros(kernel_size, channels)
    piece = max(
        1, KERNEL_GRAD_CHUNK_VALUES // (batch * kernel_size * channels)
    )
    for start in range(0, frames, piece):
        stop = min(frames, start + piece)
        # [B, n, K, C]: the K-frame window of each frame, a view
        windows = padded[:, start:].as_strided(
            (batch, stop - start, kernel_size, channels),
            (stride_b, stride_t, stride_t, stride_c),
        )
        # [K, C]
        total += (grad[:, start:stop].unsqueeze(2) * windows).sum((0, 1))
    # [C, 1, K]
    return total.t().unsqueeze(1)


class ResidualDepthwiseConvFunction(torch.autograd.Function):
    """``x + DWConv(x)`` on channels-last ``x`` [B, T, C], for training.

    The forward pass is ``residual_depthwise_conv``'s channels-last
    convolution. PyTorch's own backward pass of that convolution is many
    times slower than its forward pass on the CPU (see the README, "Training
    speed on the CPU"), so this one computes the two gradients itself:

    * input: ``grad + DWConv'(grad)`` with the filters reversed in time,
      i.e. the same fast channels-last forward convolution;
    * filters: ``depthwise_kernel_grad``.

    The same gradients as autograd's up to float rounding (``gradcheck``
    and ``gradgradcheck`` pass in float64). The backward pass is made of
    differentiable operations, so gradients of gradients (a gradient
    penalty, ``create_graph=True``) work; forward-mode derivatives
    (``torch.autograd.forward_ad``) are given by ``jvp``.

    Example
    -------
    >>> x = torch.randn(2, 30, 6, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(6, 1, 5, dtype=torch.float64, requires_grad=True)
    >>> torch.autograd.gradcheck(ResidualDepthwiseConvFunction.apply, (x, w))
    True
    """

    @staticmethod
    def forward(ctx, x, weight):
        """[B, T, C] -> [B, T, C]."""
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        # [B, T, C]
        return residual_depthwise_conv(x, weight, channels_last=True)

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent):
        """Forward-mode derivative: the convolution is linear in ``x`` and
        in the filters separately."""
        x, weight = ctx.saved_tensors
        # [B, T, C]
        tangent = torch.zeros_like(x)
        if x_tangent is not None:
            tangent = tangent + residual_depthwise_conv(x_tangent, weight)
        if weight_tangent is not None:
            # the filters' part carries no residual: subtract it back
            tangent = tangent + residual_depthwise_conv(x, weight_tangent) - x
        return tangent

    @staticmethod
    def backward(ctx, grad):
        """Gradients of the input [B, T, C] and of the filters [C, 1, K]."""
        x, weight = ctx.saved_tensors
        # [B, T, C]
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # [B, T, C]: the transposed convolution, filters reversed
            grad_x = residual_depthwise_conv(
                grad, weight.flip(-1), channels_last=True
            )
        if ctx.needs_input_grad[1]:
            # [C, 1, K]
            grad_w = depthwise_kernel_grad(x, grad, weight.shape[-1])
        return grad_x, grad_w


class ConvModule(nn.Module):
    """Residual depthwise convolution along time: ``x + DWConv(x)``.

    The convolution augmentation of MossFormer: a depthwise (one filter per
    channel) convolution of odd ``kernel_size`` with "same" padding and no
    bias, added back to its input. It works on channels-last tensors (see
    ``residual_depthwise_conv`` for how).

    Arguments
    ---------
    channels : int
        Number of channels (last dimension of the input).
    kernel_size : int
        Odd length of the depthwise filters (17 in MossFormer).

    Example
    -------
    >>> conv = ConvModule(6)
    >>> x = torch.randn(2, 40, 6)
    >>> conv(x).shape
    torch.Size([2, 40, 6])
    """

    def __init__(self, channels, kernel_size=17):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"ConvModule needs an odd kernel_size, got {kernel_size}"
            )
        self.depthwise = nn.Conv1d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=channels,
            bias=False,
        )

    def forward(self, x, out=None):
        """Applies the residual depthwise convolution to ``x``.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, C].
        out : torch.Tensor, optional
            Inference only: a [B, T, C] tensor to write the result into
            (see ``residual_depthwise_conv``).

        Returns
        -------
        torch.Tensor
            ``x + depthwise_conv(x)``, [B, T, C].
        """
        if _hooks_inside(self) or not _stock((self.depthwise, nn.Conv1d)):
            # [B, T, C]: the module itself, so that its hooks fire
            return x + self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        # [B, T, C]
        return residual_depthwise_conv(x, self.depthwise.weight, out=out)


class FFConvM(nn.Module):
    """Convolution-augmented feed-forward module of MossFormer.

    ``ScaleNorm -> Linear -> SiLU -> ConvModule -> Dropout``, channels last.

    Arguments
    ---------
    dim_in : int
        Input features.
    dim_out : int
        Output features.
    dropout : float
        Dropout probability applied to the output.
    kernel_size : int
        Kernel size of the depthwise convolution.

    Example
    -------
    >>> ff = FFConvM(8, 16)
    >>> ff(torch.randn(2, 30, 8)).shape
    torch.Size([2, 30, 16])
    """

    def __init__(self, dim_in, dim_out, dropout=0.1, kernel_size=17):
        super().__init__()
        self.norm = ScaleNorm(dim_in)
        self.linear = nn.Linear(dim_in, dim_out)
        self.conv = ConvModule(dim_out, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, scratch=None, result=None):
        """Maps ``x`` [B, T, dim_in] to [B, T, dim_out].

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, dim_in].
        scratch : Scratch, optional
            Inference only: holds the linear output.
        result : torch.Tensor, optional
            Inference only: receives the output, [B, T, dim_out].

        Returns
        -------
        torch.Tensor
            [B, T, dim_out].
        """
        plain = _hooks_inside(self) or not _stock_ffconvm(self)
        if (
            self.linear.out_features < self.linear.in_features
            and not plain
            and x.dtype != torch.float16  # g / rms may overflow it
            # autocast: addcmul would promote the bf16/fp16 product back to
            # float32, unlike the Linear it stands for
            and not torch.is_autocast_enabled(x.device.type)
        ):
            # A narrowing layer scales its (smaller) output rather than its
            # input: (x * s) W^T + b = (x W^T) * s + b, s = g / rms(x).
            # [B, T, 1]
            scale = self.norm.g / self.norm.rms(x)
            out = None
            if scratch is not None:
                shape = (*x.shape[:-1], self.linear.out_features)
                out = scratch.get("narrow", shape, x)
            # [B, T, dim_out]
            if out is None:
                x = torch.matmul(x, self.linear.weight.t())
            else:
                weight_t = self.linear.weight.t()
                gemm(x.flatten(0, 1), weight_t, out.flatten(0, 1))
                x = out
            x = torch.addcmul(self.linear.bias, x, scale, out=out)
        else:
            # [B, T, dim_out]
            x = self.linear(self.norm(x))
        # [B, T, dim_out]
        x = F.silu(x, inplace=_in_place_ok() and not plain)
        # [B, T, dim_out]
        x = self.conv(x) if plain else self.conv(x, result)
        # [B, T, dim_out]
        return self.dropout(x)


def _stock_ffconvm(ff):
    """True when ``ff`` (an FFConvM) has its own layer types, whose
    weights its fast paths (and ``shared_input_ffconvm``) may read."""
    layers = ff._modules
    return _stock(
        (layers["norm"], ScaleNorm),
        (layers["linear"], nn.Linear),
        (layers["conv"], ConvModule),
        (layers["conv"]._modules["depthwise"], nn.Conv1d),
    )


def shared_input_ffconvm(modules, x, scratch=None):
    """Runs FFConvM modules that read the same input as one wide FFConvM.

    Returns ``torch.cat([m(x) for m in modules], dim=-1)`` with one
    normalisation, one matmul, one SiLU and one depthwise convolution in
    all: the ScaleNorms differ only in their scalar gains ``g`` (folded into
    each module's linear weights), and SiLU, the depthwise convolution and
    dropout act on each channel alone, so they run on the concatenated
    channels at once. MossFormer's ``to_hidden`` and ``to_qk`` are such a
    pair.

    Arguments
    ---------
    modules : sequence of FFConvM
        Modules with the same ``dim_in`` and dropout probability.
    x : torch.Tensor
        Their common input [B, T, dim_in].
    scratch : Scratch, optional
        Inference only: holds the linear output (dead after the
        convolution) as buffer ``"wide"`` and the result as ``"conv"``;
        ``x`` is then normalised in place (its content is lost).

    Returns
    -------
    torch.Tensor
        The outputs side by side [B, T, sum of dim_out].

    Example
    -------
    >>> a, b = FFConvM(8, 16).eval(), FFConvM(8, 4).eval()
    >>> x = torch.randn(2, 30, 8)
    >>> both = shared_input_ffconvm((a, b), x)
    >>> both.shape
    torch.Size([2, 30, 20])
    >>> torch.allclose(both, torch.cat((a(x), b(x)), dim=-1), atol=1e-5)
    True
    """
    first = modules[0]
    if any(m.dropout.p != first.dropout.p for m in modules):
        return torch.cat([m(x) for m in modules], dim=-1)
    # [B, T, dim_in]: x / rms(x), shared by all the ScaleNorms
    if scratch is None:
        x = x / first.norm.rms(x)
    else:
        x = x.div_(first.norm.rms(x))
    # [sum dim_out, dim_in], [sum dim_out], [sum dim_out, 1, K]
    weight, bias, kernels = fused_ffconvm_parameters(modules)
    # [B, T, sum dim_out]
    if scratch is None:
        x = F.linear(x, weight, bias)
    else:
        shape = (*x.shape[:-1], weight.shape[0])
        out = scratch.get("wide", shape, x)
        gemm(x.flatten(0, 1), weight.t(), out.flatten(0, 1), bias=bias)
        x = out
    # [B, T, sum dim_out]
    x = F.silu(x, inplace=_in_place_ok())
    # [B, T, sum dim_out]
    x = residual_depthwise_conv(
        x,
        kernels,
        out=None if scratch is None else scratch.get("conv", x.shape, x),
    )
    # [B, T, sum dim_out]
    return first.dropout(x)


def fused_ffconvm_parameters(modules):
    """The parameters of FFConvM modules fused into one wide FFConvM.

    Recomputed on every call (a few MiB per block): keeping them would hold
    a second copy of the largest weights for as long as the model lives.

    Arguments
    ---------
    modules : sequence of FFConvM
        Modules reading the same input.

    Returns
    -------
    weight : torch.Tensor
        [sum dim_out, dim_in], each module's ScaleNorm gain folded into its
        rows.
    bias : torch.Tensor
        [sum dim_out].
    kernels : torch.Tensor
        [sum dim_out, 1, K] depthwise kernels.

    Example
    -------
    >>> a, b = FFConvM(8, 16), FFConvM(8, 4)
    >>> weight, bias, kernels = fused_ffconvm_parameters((a, b))
    >>> weight.shape, bias.shape, kernels.shape
    (torch.Size([20, 8]), torch.Size([20]), torch.Size([20, 1, 17]))
    """
    return (
        torch.cat([m.linear.weight * m.norm.g for m in modules]),
        torch.cat([m.linear.bias for m in modules]),
        torch.cat([m.conv.depthwise.weight for m in modules]),
    )


class OffsetScale(nn.Module):
    """Per-head offset and scale that turn one shared Q/K into several heads.

    ``head_h = x * gamma[h] + beta[h]``; ``gamma`` is initialised from
    N(0, 0.02) and ``beta`` to zero, as in FLASH and the official MossFormer.

    Arguments
    ---------
    dim : int
        Feature size of the shared query/key.
    heads : int
        Number of heads produced (MossFormer uses 4: quadratic query,
        linear query, quadratic key, linear key, in that order).

    Example
    -------
    >>> offset_scale = OffsetScale(8, heads=4)
    >>> quad_q, lin_q, quad_k, lin_k = offset_scale(torch.randn(2, 5, 8))
    >>> quad_q.shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, dim, heads=4):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(heads, dim))
        self.beta = nn.Parameter(torch.zeros(heads, dim))
        nn.init.normal_(self.gamma, std=0.02)

    def forward(self, x):
        """Returns ``heads`` tensors shaped like ``x``.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, D].

        Returns
        -------
        tuple of torch.Tensor
            ``heads`` tensors ``x * gamma[h] + beta[h]``, each [B, T, D].
        """
        # H x [B, T, D]
        return self.stacked(x).unbind(dim=0)

    def stacked(self, x, out=None):
        """Returns the heads stacked head-major in one tensor [H, B, T, D].

        Each head ``out[h]`` is then a contiguous [B, T, D] tensor, which
        the attention products read fastest.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, D].
        out : torch.Tensor, optional
            Inference only: an [H, B, T, D] tensor to write them into.

        Returns
        -------
        torch.Tensor
            [H, B, T, D].
        """
        # [H, 1, 1, D] + [1, B, T, D] * [H, 1, 1, D] -> [H, B, T, D]
        return torch.addcmul(
            self.beta[:, None, None],
            x.unsqueeze(0),
            self.gamma[:, None, None],
            out=out,
        )


ROTARY_MAX_DIM = 32


def rotary_width(query_key_dims):
    """How many query/key features carry the rotary positions: the
    official ``min(32, query_key_dim)``, over all the blocks' widths when
    they differ (a pruned model).

    Arguments
    ---------
    query_key_dims : int or sequence of int
        The query/key width, or one per block.

    Returns
    -------
    int

    Example
    -------
    >>> rotary_width(128), rotary_width([96, 24, 40])
    (32, 24)
    """
    try:
        dims = [int(d) for d in query_key_dims]
    except TypeError:
        dims = [int(query_key_dims)]
    return min([ROTARY_MAX_DIM] + dims)


def rotary_for(query_key_dims):
    """The ``RotaryEmbedding`` of blocks of these query/key widths.

    Arguments
    ---------
    query_key_dims : int or sequence of int
        The query/key width, or one per block.

    Returns
    -------
    RotaryEmbedding

    Example
    -------
    >>> rotary_for(128).dim
    32
    >>> rotary_for(31)
    Traceback (most recent call last):
    ...
    ValueError: query_key_dim 31 is odd: below 32 it must be even (the rotary positions turn its features in pairs)
    """
    width = rotary_width(query_key_dims)
    if width % 2:
        raise ValueError(
            f"query_key_dim {width} is odd: below {ROTARY_MAX_DIM} it must "
            "be even (the rotary positions turn its features in pairs)"
        )
    return RotaryEmbedding(width)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding, interleaved (GPT-J) layout.

    Rotates feature pairs ``(x0, x1), (x2, x3), ...`` of the first ``dim``
    features by ``position * theta**(-2i/dim)``; the remaining features pass
    unchanged. Positions run ``0..T-1`` over the whole sequence.

    Arguments
    ---------
    dim : int
        Number of leading features that are rotated (even).
    theta : float
        Base of the geometric frequency progression.

    Example
    -------
    >>> rotary = RotaryEmbedding(4)
    >>> x = torch.randn(2, 7, 8)
    >>> y = rotary(x)
    >>> y.shape
    torch.Size([2, 7, 8])
    >>> torch.equal(y[..., 4:], x[..., 4:])
    True
    >>> torch.allclose(y.norm(dim=-1), x.norm(dim=-1))
    True
    """

    def __init__(self, dim, theta=10000.0):
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"RotaryEmbedding needs an even dim, got {dim}")
        self.dim = dim
        self.theta = theta
        for name, table in self.tables().items():
            self.register_buffer(name, table, persistent=False)

    def tables(self):
        """The fixed tables (not saved in checkpoints): ``inv_freq``
        [dim/2] and ``half_turn`` [dim, dim].

        Example
        -------
        >>> {k: tuple(v.shape) for k, v in RotaryEmbedding(4).tables().items()}
        {'inv_freq': (2,), 'half_turn': (4, 4)}
        """
        dim = self.dim
        inv_freq = 1.0 / (
            self.theta ** (torch.arange(0, dim, 2).float() / dim)
        )
        # [dim, dim]: x @ half_turn = (-x1, x0, -x3, x2, ...), exactly (one
        # +-1 per column), as one small matmul instead of a gather
        half_turn = torch.zeros(dim, dim)
        even = torch.arange(0, dim, 2)
        half_turn[even + 1, even] = -1.0
        half_turn[even, even + 1] = 1.0
        return {"inv_freq": inv_freq, "half_turn": half_turn}

    def _load_from_state_dict(self, *args, **kwargs):
        _refill_tables(self)
        super()._load_from_state_dict(*args, **kwargs)

    def angles(self, seq_len, device):
        """Returns the cosine and sine tables, each [seq_len, dim].

        The angles are formed in (at least) float32 even in a model cast to
        half precision: frequencies rounded to 3 significant digits would
        put the angle of frame 4000 off by up to 0.7 rad.

        Arguments
        ---------
        seq_len : int
            Number of frames T.
        device : torch.device or str
            Where the tables are made.

        Returns
        -------
        tuple of torch.Tensor
            ``(cos, sin)``, each [T, dim], float32 or wider.

        Example
        -------
        >>> rotary = RotaryEmbedding(8)
        >>> cos, sin = rotary.angles(4000, "cpu")
        >>> cos_h, sin_h = rotary.to(torch.bfloat16).angles(4000, "cpu")
        >>> bool((cos - cos_h).abs().max() < 1e-6)
        True
        """
        # [T]
        positions = torch.arange(seq_len, device=device).float()
        # [T, dim/2] -> [T, dim] (each frequency repeated twice: f0 f0 f1 f1)
        freqs = torch.outer(positions, full_precision_inv_freq(self, device))
        freqs = freqs.repeat_interleave(2, dim=-1)
        return freqs.cos(), freqs.sin()

    def forward(self, x, cos_sin=None, inplace=False):
        """Rotates the first ``dim`` features of ``x`` by their positions.

        Arguments
        ---------
        x : torch.Tensor
            Queries or keys [..., T, D], D >= ``dim``.
        cos_sin : tuple of torch.Tensor, optional
            The tables of ``angles(T, device)`` (computed when not given).
        inplace : bool
            Inference only: write the rotated features back into ``x``
            instead of concatenating a new tensor.

        Returns
        -------
        torch.Tensor
            [..., T, D].
        """
        if cos_sin is None:
            cos_sin = self.angles(x.shape[-2], x.device)
        cos, sin = cos_sin
        if inplace and _complex_view_ok(x, self.dim):
            # [..., T, dim/2] complex: pair (x0, x1) is x0 + i x1, and the
            # rotation by angle a is one product with cos a + i sin a, done
            # in place in a single pass (same numbers up to float rounding)
            pairs = torch.view_as_complex(
                x[..., : self.dim].unflatten(-1, (self.dim // 2, 2))
            )
            # [T, dim/2]: the tables hold each angle twice (f0 f0 f1 f1 ...)
            pairs.mul_(torch.complex(cos[:, 0::2], sin[:, 0::2]))
            return x
        # [..., T, dim], [..., T, D - dim]
        rot, rest = x[..., : self.dim], x[..., self.dim :]
        # [..., T, dim]: (-x1, x0, -x3, x2, ...)
        rotated_half = torch.matmul(rot, self.half_turn)
        # [..., T, dim]
        rot = rot * cos + rotated_half * sin
        if rot.dtype != self.half_turn.dtype:
            # a half-precision model (``model.half()``): float32 tables
            # would promote the heads to float32
            rot = rot.to(self.half_turn.dtype)
        if inplace:
            # [..., T, D]: the first dim features replaced
            x[..., : self.dim] = rot
            return x
        if rest.shape[-1] == 0:
            return rot
        # [..., T, D]
        return torch.cat((rot, rest), dim=x.dim() - 1)


def full_precision_inv_freq(module, device):
    """``module.inv_freq`` on ``device``, recomputed in float32 when the
    module was cast to float16 or bfloat16 (``model.half()``), whose
    rounding of the frequencies would misplace the positions of long
    inputs.

    Arguments
    ---------
    module : RotaryEmbedding or ScaledSinuEmbedding
        A module with an ``inv_freq`` buffer.
    device : torch.device or str
        Where the result goes.

    Returns
    -------
    torch.Tensor
        The inverse frequencies [dim / 2], float32 or wider.

    Example
    -------
    >>> rotary = RotaryEmbedding(32).half()
    >>> rotary.inv_freq.dtype, full_precision_inv_freq(rotary, "cpu").dtype
    (torch.float16, torch.float32)
    """
    inv_freq = module.inv_freq
    if inv_freq.dtype in (torch.float16, torch.bfloat16):
        inv_freq = module.tables()["inv_freq"]
    return inv_freq.to(device)


def _refill_tables(module):
    """Writes ``module.tables()`` into its (unsaved) buffers, in their
    dtype and device, when a state dict is loaded: a model built on the
    meta device and then ``to_empty()`` holds uninitialised memory there,
    which no checkpoint restores."""
    for name, table in module.tables().items():
        buffer = getattr(module, name)
        if buffer.device.type != "meta":
            with torch.no_grad():
                buffer.copy_(table)


class ScaledSinuEmbedding(nn.Module):
    """Global sinusoidal position embedding with one learned scale.

    ``emb[t] = concat(sin(t * f), cos(t * f)) * scale`` with
    ``f = 1 / 10000**(2i / dim)``; the sine and cosine halves are
    concatenated, not interleaved.

    Arguments
    ---------
    dim : int
        Embedding size (even).

    Example
    -------
    >>> pos = ScaledSinuEmbedding(16)
    >>> pos(torch.randn(2, 10, 16)).shape
    torch.Size([10, 16])
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.ones(1))
        for name, table in self.tables().items():
            self.register_buffer(name, table, persistent=False)

    def tables(self):
        """The fixed table (not saved in checkpoints): ``inv_freq``.

        Example
        -------
        >>> ScaledSinuEmbedding(8).tables()["inv_freq"].shape
        torch.Size([4])
        """
        dim = self.dim
        return {
            "inv_freq": 1.0 / (
                10000 ** (torch.arange(0, dim, 2).float() / dim)
            )
        }

    def _load_from_state_dict(self, *args, **kwargs):
        _refill_tables(self)
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x):
        """Returns the scaled sinusoidal position embedding for ``x``.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, dim] (only T, the device are used).

        Returns
        -------
        torch.Tensor
            [T, dim], in the dtype of ``scale``.
        """
        # [T]
        positions = torch.arange(x.shape[1], device=x.device).float()
        # [T, dim/2]: float32 angles even in a half-precision model
        sinusoid = torch.outer(
            positions, full_precision_inv_freq(self, x.device)
        )
        # [T, dim]
        emb = torch.cat((sinusoid.sin(), sinusoid.cos()), dim=-1)
        # in the model's dtype (float32 positions would promote a
        # half-precision model's activations to float32); [T, dim]
        return (emb * self.scale).to(self.scale.dtype)


def pad_time(x, frames):
    """Appends ``frames`` zero frames to ``x`` [B, T, C] (dim 1).

    Written as a concatenation with zeros rather than ``F.pad``, so that a
    traced graph keeps a known rank when ``frames`` depends on the input
    length (ONNX export).

    Arguments
    ---------
    x : torch.Tensor
        Input [B, T, C].
    frames : int or torch.Tensor
        Number of zero frames (may be 0).

    Returns
    -------
    torch.Tensor
        Padded tensor [B, T + frames, C].

    Example
    -------
    >>> pad_time(torch.ones(1, 2, 3), 2).sum(-1)
    tensor([[3., 3., 0., 0.]])
    """
    # [B, frames, C]
    zeros = x.new_zeros(x.shape[0], frames, x.shape[2])
    # [B, T + frames, C]
    return torch.cat((x, zeros), dim=1)


def token_shift(x, out=None):
    """Shifts the first half of the features one frame later in time.

    ``x'[t, :D/2] = x[t-1, :D/2]`` (zero at ``t = 0``); the second half is
    unchanged. A cheap way to mix neighbouring frames before attention.

    Arguments
    ---------
    x : torch.Tensor
        Input [B, T, D].
    out : torch.Tensor, optional
        Inference only: a [B, T, D] tensor (not overlapping ``x``) to write
        the result into, instead of allocating two new tensors.

    Returns
    -------
    torch.Tensor
        Shifted tensor [B, T, D].

    Example
    -------
    >>> x = torch.arange(6.0).view(1, 3, 2)
    >>> token_shift(x)
    tensor([[[0., 1.],
             [0., 3.],
             [2., 5.]]])
    """
    # [B, T, D/2] each (positive dims: a traced graph keeps its ranks)
    x_shift, x_pass = x.chunk(2, dim=2)
    if out is not None:
        width, frames = x_shift.shape[2], x.shape[1]
        # [B, 1, D/2]: first frame zero; [B, T - 1, D/2]: one frame later
        out[:, :1, :width].zero_()
        out[:, 1:, :width].copy_(x_shift[:, : frames - 1])
        # [B, T, D - D/2]: second half unchanged
        out[:, :, width:].copy_(x_pass)
        return out
    # [B, T, D/2]: one frame later, first frame zero
    x_shift = torch.cat(
        (torch.zeros_like(x_shift[:, :1]), x_shift[:, : x.shape[1] - 1]),
        dim=1,
    )
    # [B, T, D]
    return torch.cat((x_shift, x_pass), dim=2)


# Values added to the rows of a padded scratch buffer (one 64-byte cache
# line of float32), see ``Scratch.get``
ROW_PAD = 16


# Values (batch x frames x features) per piece of ``gate_in_place``: the
# four pieces it reads stay in the core's cache between its three passes
GATE_CHUNK_VALUES = 1 << 18


def gate_in_place(att_v, att_u, v, u):
    """MossFormer's gates, ``(att_u * v) * sigmoid(att_v * u)``, in place.

    Inference only: the result is written into ``att_u`` and ``att_v`` is
    overwritten. The frames are taken in pieces of about
    ``GATE_CHUNK_VALUES`` values, so that each piece is read from memory
    once for the three passes (two products and the sigmoid).

    Arguments
    ---------
    att_v, att_u : torch.Tensor
        Attention outputs for V and U [B, T, E].
    v, u : torch.Tensor
        V and U [B, T, E].

    Returns
    -------
    torch.Tensor
        The gated values [B, T, E] (``att_u``).

    Example
    -------
    >>> att_v, att_u, v, u = torch.randn(4, 2, 9, 6).unbind(0)
    >>> ref = (att_u * v) * torch.sigmoid(att_v * u)
    >>> out = gate_in_place(att_v.clone(), att_u.clone(), v, u)
    >>> torch.allclose(out, ref)
    True
    """
    B, T, E = att_u.shape
    piece = max(1, GATE_CHUNK_VALUES // (B * E))
    for start in range(0, T, piece):
        rows = slice(start, min(T, start + piece))
        # [B, rows, E]: att_u * v * sigmoid(att_v * u)
        att_u[:, rows].mul_(v[:, rows]).mul_(
            att_v[:, rows].mul_(u[:, rows]).sigmoid_()
        )
    return att_u


class Scratch:
    """Reusable output buffers for inference without autograd.

    The blocks of a stack run one after another, so each block can write
    its large intermediate results into the memory of the previous block's
    (dead) ones instead of fresh allocations: on Linux a fresh large tensor
    costs a page fault and a zeroing per 4 KiB page, about a tenth of a
    block's time. ``MossFormerStack`` makes one per forward pass when
    ``_in_place_ok()``; it is dropped at the end of the pass. A block with
    a hook on itself or on one of its submodules does not use it, so what
    hooks keep stays valid.

    Example
    -------
    >>> scratch = Scratch()
    >>> a = scratch.get("wide", (2, 3), torch.zeros(1))
    >>> b = scratch.get("wide", (3, 2), torch.zeros(1))
    >>> a.data_ptr() == b.data_ptr()
    True
    """

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, like, padded=False):
        """A tensor of ``shape`` (dtype/device of ``like``) in buffer ``name``.

        Its content is undefined; it shares memory with every earlier
        tensor from the same ``name``. ``padded``: when a row (last axis)
        is a multiple of 2 KiB, the rows are laid out ``ROW_PAD`` values
        apart more (a view, not contiguous): rows whose stride is a
        multiple of 4 KiB fall into the same cache sets, which slows the
        matrix products that read or write them by about a tenth.

        Arguments
        ---------
        name : str
            Buffer name.
        shape : tuple of int
            Shape of the tensor.
        like : torch.Tensor
            Gives the dtype and device.
        padded : bool
            Pad rows off multiples of 4 KiB (see above).

        Returns
        -------
        torch.Tensor
            Of ``shape``, undefined content.
        """
        if padded and (shape[-1] * like.element_size()) % 2048 == 0:
            rows = (*shape[:-1], shape[-1] + ROW_PAD)
            return self.get(name, rows, like)[..., : shape[-1]]
        numel = 1
        for size in shape:
            numel *= size
        buffer = self.buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = like.new_empty(numel)
            self.buffers[name] = buffer
        return buffer[:numel].view(shape)

    def get_unlike(self, names, shape, like, avoid):
        """``get`` from the first of ``names`` whose memory is not that of
        ``avoid`` (alternating buffers: a block's output must not be
        written over its input).

        Arguments
        ---------
        names : sequence of str
            Buffer names, tried in order.
        shape : tuple of int
            Shape of the tensor.
        like : torch.Tensor
            Gives the dtype and device.
        avoid : torch.Tensor
            A tensor whose memory the result must not share.

        Returns
        -------
        torch.Tensor
            Of ``shape``, undefined content.
        """
        for name in names:
            buffer = self.buffers.get(name)
            if buffer is None or buffer.data_ptr() != avoid.data_ptr():
                return self.get(name, shape, like)
        raise ValueError(f"all of {names} hold the tensor to avoid")


class MossFormerBlock(nn.Module):
    """One MossFormer block: a gated single-head attention unit.

    Arguments
    ---------
    dim : int
        Model width (features per frame).
    group_size : int
        Frames per group of the quadratic (local) attention.
    query_key_dim : int
        Width of the shared query/key.
    expansion_factor : float
        Hidden width of ``to_hidden`` is ``dim * expansion_factor``; U and V
        are its two halves. ``to_out`` maps ``dim * expansion_factor / 2``
        back to ``dim`` (so the official model, with ``to_out`` of input
        ``2 * dim``, fixes it at 4).
    dropout : float
        Dropout on the attention matrix and on every FFConvM output.
    kernel_size : int
        Depthwise convolution kernel of the FFConvM modules.
    rotary : RotaryEmbedding, optional
        Rotary embedding to use (shared by all blocks in a stack). A new one
        of ``rotary_width(query_key_dim)`` features is made if not given.
    hidden_dim : int, optional
        Explicit hidden width of ``to_hidden`` (overrides
        ``expansion_factor``; used by structured pruning).

    Example
    -------
    >>> block = MossFormerBlock(dim=16, group_size=4, query_key_dim=8)
    >>> x = torch.randn(2, 10, 16)
    >>> block(x).shape
    torch.Size([2, 10, 16])
    """

    def __init__(
        self,
        dim,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        dropout=0.1,
        kernel_size=17,
        rotary=None,
        hidden_dim=None,
    ):
        super().__init__()
        group_size = _positive_int("group_size", group_size)
        query_key_dim = _positive_int("query_key_dim", query_key_dim)
        if hidden_dim is None:
            hidden_dim = int(dim * expansion_factor)
        hidden_dim = _positive_int("hidden_dim", hidden_dim, minimum=2)
        if hidden_dim % 2 != 0:
            raise ValueError(f"hidden_dim must be even, got {hidden_dim}")
        self.group_size = group_size
        self.hidden_dim = hidden_dim
        self.rotary = (
            rotary
            if rotary is not None
            else rotary_for(query_key_dim)
        )
        self.to_hidden = FFConvM(dim, hidden_dim, dropout, kernel_size)
        self.to_qk = FFConvM(dim, query_key_dim, dropout, kernel_size)
        self.qk_offset_scale = OffsetScale(query_key_dim, heads=4)
        self.to_out = FFConvM(hidden_dim // 2, dim, dropout, kernel_size)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x, cos_sin=None, scratch=None, keep_output=False):
        """Processes ``x`` [B, T, dim].

        ``cos_sin`` caches the rotary tables; ``scratch`` (a ``Scratch``,
        inference only) lends buffers for the large intermediate results.
        ``keep_output``: write the output into fresh memory, not into a
        ``scratch`` buffer (the stack asks for it when a hook on the next
        block may keep its input). With a forward hook inside the block
        (see ``_hooks_inside``) the block runs its plain path: the same
        numbers, every submodule called, no buffers shared.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, dim].
        cos_sin : tuple of torch.Tensor, optional
            The rotary tables (``RotaryEmbedding.angles``).
        scratch : Scratch, optional
            Inference only: shared buffers.
        keep_output : bool
            Write the output into fresh memory.

        Returns
        -------
        torch.Tensor
            ``x`` plus the block's gated attention output, [B, T, dim].
        """
        plain = (
            _hooks_inside(self)
            or not _stock_ffconvm(self.to_hidden)
            or not _stock_ffconvm(self.to_qk)
        )
        if plain:
            scratch = None
        # [B, T, D]
        shifted = token_shift(
            x, None if scratch is None else scratch.get("shift", x.shape, x)
        )
        if plain:
            # [B, T, 2E + Dqk]: each FFConvM called, so that hooks fire
            hidden_qk = torch.cat(
                (self.to_hidden(shifted), self.to_qk(shifted)), dim=-1
            )
        else:
            # [B, T, 2E + Dqk]: to_hidden and to_qk read the same input, so
            # they run as one wide FFConvM (E = hidden_dim / 2)
            hidden_qk = shared_input_ffconvm(
                (self.to_hidden, self.to_qk), shifted, scratch
            )
        # [B, T, 2E]: V and U side by side; [B, T, Dqk]: the shared Q/K
        hidden = hidden_qk[..., : self.hidden_dim]
        qk = hidden_qk[..., self.hidden_dim :]
        # [4, B, T, Dqk]: quadratic q, linear q, quadratic k, linear k
        if plain:
            heads = torch.stack(self.qk_offset_scale(qk), dim=0)
        else:
            heads = self.qk_offset_scale.stacked(
                qk,
                None
                if scratch is None
                else scratch.get("heads", (4, *qk.shape), qk),
            )
        # [B, T, 2E]: attention outputs for V and U, side by side
        attended = self.joint_attention(heads, hidden, cos_sin, scratch)
        # [B, T, E] each
        half = self.hidden_dim // 2
        v, u = hidden[..., :half], hidden[..., half:]
        att_v, att_u = attended[..., :half], attended[..., half:]
        # [B, T, E]: the three gates
        if _in_place_ok():
            # the same operations, in place in ``attended``
            gated = gate_in_place(att_v, att_u, v, u)
        else:
            gated = (att_u * v) * torch.sigmoid(att_v * u)
        # [B, T, D]: into a buffer other than the one holding x, unless a
        # forward hook on the block (or a hook on the next block, which
        # sees it as its input) may keep the output (it must stay valid;
        # hooks inside the block or global ones made it plain)
        out = None
        if scratch is not None and not (self._forward_hooks or keep_output):
            out = scratch.get_unlike(("out_a", "out_b"), x.shape, x, x)
        out = self.to_out(gated, scratch, out)
        # [B, T, D]
        return out.add_(x) if _in_place_ok() and not plain else x + out

    def __prepare_scriptable__(self):
        """``torch.jit.script`` cannot compile the block (its inference
        path chooses buffers and kernels in Python): say what works."""
        raise TypeError(
            "MossFormerBlock cannot be compiled with torch.jit.script: use "
            "torch.jit.trace(model, example_mixture) (the traced graph is "
            "right for every batch size and length), torch.compile, or "
            "python -m speechbrain_mossformer.export_onnx for ONNX"
        )

    def joint_attention(self, heads, values, cos_sin=None, scratch=None):
        """Joint local (quadratic) and global (linear) single-head attention.

        Arguments
        ---------
        heads : torch.Tensor
            The quadratic query, linear query, quadratic key and linear key
            stacked head-major [4, B, T, Dqk] (``OffsetScale.stacked``).
        values : torch.Tensor
            V and U side by side [B, T, 2E]; one attention matrix serves
            both.
        cos_sin : tuple, optional
            Cached rotary tables for T frames.
        scratch : Scratch, optional
            Inference only: holds the output, in buffer ``"wide"``.

        Returns
        -------
        torch.Tensor
            ``quad + lin`` attention output [B, T, 2E].

        Example
        -------
        >>> block = MossFormerBlock(dim=16, group_size=4, query_key_dim=8)
        >>> block.joint_attention(torch.randn(4, 2, 10, 8),
        ...                       torch.randn(2, 10, 64)).shape
        torch.Size([2, 10, 64])
        """
        B, T, _ = values.shape
        # [4, B, T, Dqk]: rotary positions 0..T-1 on all four heads
        if cos_sin is None:
            cos_sin = self.rotary.angles(T, heads.device)
        heads = self.rotary(heads, cos_sin, inplace=scratch is not None)
        # 4 x [B, T, Dqk], each contiguous
        quad_q, lin_q, quad_k, lin_k = heads.unbind(dim=0)

        # Global linear attention over the true T frames.
        if scratch is None:
            # [B, Dqk, 2E]
            lin_kv = torch.matmul(lin_k.transpose(1, 2), values) / T
            # [B, T, 2E]
            out = torch.matmul(lin_q, lin_kv)
        else:
            # [B, T, 2E], rows padded (see Scratch.get)
            out = scratch.get("wide", values.shape, values, padded=True)
            for b in range(B):
                # [2E, Dqk]: (K^T V)^T = V^T K, which the BLAS writes
                # faster than K^T V (same numbers)
                kv_t = values.new_empty(values.shape[2], lin_k.shape[2])
                gemm(values[b].t(), lin_k[b], kv_t).div_(T)
                # [T, 2E]
                gemm(lin_q[b], kv_t.t(), out[b])

        # Local quadratic attention inside groups of g frames, added to out.
        if torch.jit.is_tracing():
            # one graph for every T (ONNX export): zero padding to whole
            # groups, see local_attention_padded
            return out + self.local_attention_padded(quad_q, quad_k, values)
        # Eager: the whole groups as views (no copy), then the last, shorter
        # group by itself; the same numbers as zero padding, whose keys
        # score relu(0)^2 = 0 and whose query rows are cropped.
        g = self.group_size
        n_full = T // g
        for b in range(B):
            if n_full > 0:
                # [G, g, *] views of the whole groups of item b
                self._add_local_attention(
                    quad_q[b, : n_full * g].view(n_full, g, -1),
                    quad_k[b, : n_full * g].view(n_full, g, -1),
                    values[b, : n_full * g].view(n_full, g, -1),
                    out[b, : n_full * g].view(n_full, g, -1),
                )
            if n_full * g < T:
                # [1, T mod g, *]: the last group
                self._add_local_attention(
                    quad_q[b : b + 1, n_full * g :],
                    quad_k[b : b + 1, n_full * g :],
                    values[b : b + 1, n_full * g :],
                    out[b : b + 1, n_full * g :],
                )
        return out

    def _add_local_attention(self, q, k, values, out):
        """``out += relu(q k^T / group_size)^2 values``, group by group.

        ``q``, ``k`` [G, L, Dqk]; ``values``, ``out`` [G, L, 2E] (L <= g).
        """
        # [G, L, L]: squared-ReLU scores scaled by 1/group_size
        scores = torch.bmm(q, k.transpose(1, 2))
        if _in_place_ok():
            attn = scores.div_(self.group_size).relu_().square_()
        else:
            attn = F.relu(scores / self.group_size) ** 2
        attn = self.attn_dropout(attn)
        # [G, L, 2E]
        batched_gemm(attn, values, out, accumulate=True)

    def local_attention_padded(self, quad_q, quad_k, values):
        """Local attention with the sequence zero-padded to whole groups.

        The formulation of the official code: one batched product for all
        groups, whatever T. Used when tracing (ONNX export), where the group
        count must follow the input length.

        Arguments
        ---------
        quad_q, quad_k : torch.Tensor
            Rotated quadratic queries and keys [B, T, Dqk].
        values : torch.Tensor
            V and U side by side [B, T, 2E].

        Returns
        -------
        torch.Tensor
            The local attention output [B, T, 2E].

        Example
        -------
        >>> block = MossFormerBlock(dim=16, group_size=4, query_key_dim=8)
        >>> q, k, v = torch.randn(2, 7, 8), torch.randn(2, 7, 8), torch.randn(
        ...     2, 7, 64)
        >>> block.local_attention_padded(q, k, v).shape
        torch.Size([2, 7, 64])
        """
        B, T, _ = values.shape
        g = self.group_size
        # Zero padding to a multiple of g: padded keys are exactly zero, so
        # their scores relu(0)^2 are zero and they attend to nothing.
        padding = (g - T % g) % g
        # [B, T + padding, *]
        quad_q = pad_time(quad_q, padding)
        quad_k = pad_time(quad_k, padding)
        values = pad_time(values, padding)
        # explicit sizes, no -1 (the TorchScript ONNX exporter can turn a
        # -1 beside traced sizes into a 1)
        n_groups = (T + padding) // g
        qk_dim, width = self.to_qk.linear.out_features, self.hidden_dim
        # [B, G, g, Dqk], [B, G, g, 2E]
        quad_q = quad_q.reshape(B, n_groups, g, qk_dim)
        quad_k = quad_k.reshape(B, n_groups, g, qk_dim)
        values = values.reshape(B, n_groups, g, width)
        # [B, G, g, g]: squared-ReLU scores scaled by 1/group_size
        scores = torch.matmul(quad_q, quad_k.transpose(2, 3)) / g
        attn = self.attn_dropout(F.relu(scores) ** 2)
        # [B, G, g, 2E] -> [B, T + padding, 2E] -> [B, T, 2E]
        out = torch.matmul(attn, values)
        return out.reshape(B, n_groups * g, width)[:, :T]


class MossFormerStack(nn.Module):
    """A stack of MossFormer blocks followed by a LayerNorm.

    All blocks share one rotary embedding of ``min(32, query_key_dim)``
    features, as in the official model.

    Arguments
    ---------
    dim : int
        Model width.
    num_blocks : int
        Number of MossFormer blocks.
    group_size : int
        Frames per local-attention group.
    query_key_dim : int
        Width of the shared query/key.
    expansion_factor : float
        Hidden width factor of ``to_hidden``.
    attn_dropout : float
        Dropout inside the blocks.
    hidden_dims : list of int, optional
        Per-block hidden widths (structured pruning); overrides
        ``expansion_factor``.
    query_key_dims : list of int, optional
        Per-block query/key widths (structured pruning).
    activation_checkpointing : bool
        When gradients are recorded, keep only each block's input for the
        backward pass and recompute the block's activations there
        (``torch.utils.checkpoint``, non-reentrant, with the forward pass's
        random state, so dropout and the gradients are the same): training
        memory then grows with one block's activations instead of all of
        them, for one more forward pass of the blocks per step. No effect
        without gradients (inference). The recomputation calls a block's
        forward pre-hooks and the hooks of the modules inside it again (a
        block's own forward hooks run once).

    Example
    -------
    >>> stack = MossFormerStack(dim=16, num_blocks=2, group_size=4,
    ...                         query_key_dim=8)
    >>> stack(torch.randn(2, 10, 16)).shape
    torch.Size([2, 10, 16])
    >>> saving = MossFormerStack(dim=16, num_blocks=2, group_size=4,
    ...                          query_key_dim=8,
    ...                          activation_checkpointing=True)
    >>> saving(torch.randn(2, 10, 16, requires_grad=True)).sum().backward()
    """

    def __init__(
        self,
        dim,
        num_blocks=24,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        attn_dropout=0.1,
        hidden_dims=None,
        query_key_dims=None,
        activation_checkpointing=False,
    ):
        super().__init__()
        self.activation_checkpointing = activation_checkpointing
        if hidden_dims is None:
            hidden_dims = [int(dim * expansion_factor)] * num_blocks
        if query_key_dims is None:
            query_key_dims = [query_key_dim] * num_blocks
        if not len(hidden_dims) == len(query_key_dims) == num_blocks:
            raise ValueError(
                "hidden_dims and query_key_dims need one entry per block "
                f"({num_blocks}), got {len(hidden_dims)} and "
                f"{len(query_key_dims)}"
            )
        # (unused without blocks)
        self.rotary = rotary_for(query_key_dims if num_blocks else 2)
        self.blocks = nn.ModuleList(
            [
                MossFormerBlock(
                    dim=dim,
                    group_size=group_size,
                    query_key_dim=qk_dim,
                    dropout=attn_dropout,
                    rotary=self.rotary,
                    hidden_dim=hidden,
                )
                for hidden, qk_dim in zip(hidden_dims, query_key_dims)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        """Runs the blocks and the final LayerNorm.

        Arguments
        ---------
        x : torch.Tensor
            Features [B, T, dim].

        Returns
        -------
        torch.Tensor
            [B, T, dim].
        """
        dim = self.norm.normalized_shape[0]
        check_is_tensor(x, "MossFormerStack", f"input [B, T, {dim}]")
        if x.dim() != 3 or x.shape[-1] != dim or 0 in x.shape:
            raise ValueError(
                f"MossFormerStack expects [B >= 1, T >= 1, {dim}] input, got "
                f"shape {tuple(x.shape)}"
            )
        check_input_dtype(x, self.norm.weight, "MossFormerStack")
        # [T, rotary_dim] each, computed once for all blocks
        cos_sin = self.rotary.angles(x.shape[1], x.device)
        # buffers shared by the blocks, inference only
        scratch = Scratch() if _in_place_ok() else None
        blocks = self.blocks
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for i, block in enumerate(blocks):
            if recompute:
                # [B, T, D]: only x is kept for the backward pass, which
                # runs the block again to get its activations
                x = torch.utils.checkpoint.checkpoint(
                    block, x, cos_sin, use_reentrant=False
                )
            elif (
                scratch is not None
                and i + 1 < len(blocks)
                and _hooked(blocks[i + 1])
            ):
                # a (pre-)hook on the next block may keep this output, its
                # input: it must not go into a buffer reused later;
                # [B, T, D]
                x = block(x, cos_sin, scratch, keep_output=True)
            else:
                # [B, T, D]
                x = block(x, cos_sin, scratch)
        # [B, T, D]
        return self.norm(x)


class MossFormerMaskNet(nn.Module):
    """The MossFormer mask network, a drop-in for ``Dual_Path_Model``.

    ``GroupNorm -> 1x1 conv -> + scaled sinusoidal positions ->
    MossFormer blocks -> LayerNorm -> GroupNorm + skip -> PReLU ->
    1x1 conv to num_spks * D -> tanh * sigmoid gate -> 1x1 conv back to N
    -> ReLU`` (N = ``in_channels``, D = ``out_channels``).
    There is no dual-path chunking: the blocks see the whole sequence, and
    the local/global split happens inside each block. As in the official
    model, the GroupNorm statistics, the linear attention's average and the
    positions span the whole (padded) length, so an item of a zero-padded
    batch is not separated exactly as it would be alone.

    Arguments
    ---------
    in_channels : int
        Channels of the encoder output (N).
    out_channels : int
        Model width inside the mask net (512 in MossFormer).
    num_blocks : int
        Number of MossFormer blocks (24 in MossFormer (L)).
    num_spks : int
        Number of speakers (masks).
    group_size : int
        Frames per local-attention group (256).
    query_key_dim : int
        Width of the shared query/key (128).
    expansion_factor : float
        Hidden width factor of each block (4).
    attn_dropout : float
        Dropout inside the blocks (0.1).
    norm : str
        Normalisation of the input and of the stack output; only ``"ln"``
        (GroupNorm with one group, as in the official model) is supported.
    skip_around_mossformer : bool
        Add the stack input back after the stack (official: True).
    use_global_pos_enc : bool
        Add the scaled sinusoidal position embedding (official: True).
    hidden_dims : list of int, optional
        Per-block hidden widths, for structurally pruned models.
    query_key_dims : list of int, optional
        Per-block query/key widths, for structurally pruned models.
    activation_checkpointing : bool
        Recompute each block's activations in the backward pass instead of
        storing them (see ``MossFormerStack``): less training memory for
        more training time; the same gradients; no effect on inference.

    Example
    -------
    >>> masknet = MossFormerMaskNet(in_channels=16, out_channels=16,
    ...                             num_blocks=1, num_spks=2, group_size=4,
    ...                             query_key_dim=8)
    >>> masknet(torch.randn(3, 16, 25)).shape
    torch.Size([2, 3, 16, 25])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        num_blocks=24,
        num_spks=2,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        attn_dropout=0.1,
        norm="ln",
        skip_around_mossformer=True,
        use_global_pos_enc=True,
        hidden_dims=None,
        query_key_dims=None,
        activation_checkpointing=False,
    ):
        super().__init__()
        if norm != "ln":
            raise ValueError(
                f"MossFormerMaskNet supports norm='ln' only, got {norm!r}"
            )
        in_channels = _positive_int("in_channels", in_channels)
        out_channels = _positive_int("out_channels", out_channels)
        num_spks = _positive_int("num_spks", num_spks)
        num_blocks = _positive_int("num_blocks", num_blocks, minimum=0)
        if out_channels % 2 != 0:
            raise ValueError(
                f"out_channels must be even (token shift and sinusoidal "
                f"positions split it in halves), got {out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_spks = num_spks
        self.skip_around_mossformer = skip_around_mossformer
        self.use_global_pos_enc = use_global_pos_enc
        self.norm = nn.GroupNorm(1, in_channels, eps=1e-8)
        self.conv1d_encoder = nn.Conv1d(
            in_channels, out_channels, 1, bias=False
        )
        if use_global_pos_enc:
            self.pos_enc = ScaledSinuEmbedding(out_channels)
        self.mossformer = MossFormerStack(
            dim=out_channels,
            num_blocks=num_blocks,
            group_size=group_size,
            query_key_dim=query_key_dim,
            expansion_factor=expansion_factor,
            attn_dropout=attn_dropout,
            hidden_dims=hidden_dims,
            query_key_dims=query_key_dims,
            activation_checkpointing=activation_checkpointing,
        )
        self.att_norm = nn.GroupNorm(1, out_channels, eps=1e-8)
        self.prelu = nn.PReLU()
        self.conv1d_out = nn.Conv1d(out_channels, out_channels * num_spks, 1)
        self.output = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, 1), nn.Tanh()
        )
        self.output_gate = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, 1), nn.Sigmoid()
        )
        self.conv1_decoder = nn.Conv1d(
            out_channels, in_channels, 1, bias=False
        )

    def forward(self, x):
        """Maps the encoder output to one mask per speaker.

        Arguments
        ---------
        x : torch.Tensor
            Encoder output [B, N, L].

        Returns
        -------
        torch.Tensor
            Masks [S, B, N, L] (S = ``num_spks``), in [0, inf) (ReLU).
        """
        check_is_tensor(x, "MossFormerMaskNet", "encoder output [B, N, L]")
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"MossFormerMaskNet expects encoder output [B, "
                f"{self.in_channels}, L], got shape {tuple(x.shape)}"
            )
        if x.shape[-1] < 1:
            raise ValueError("MossFormerMaskNet got an input of 0 frames")
        check_input_dtype(
            x,
            getattr(self.conv1d_encoder, "weight", None),
            "MossFormerMaskNet",
            "encoder output",
        )
        if x.shape[0] == 0:
            raise ValueError(
                f"MossFormerMaskNet: the batch is empty (encoder output of "
                f"shape {tuple(x.shape)})"
            )
        if (
            _in_place_ok()
            and not _hooks_inside(self)
            and self._stock_head()
        ):
            # [S, B, N, L]
            return self.masks_channels_last(x)
        # [B, N, L]
        x = _group_norm(self.norm, x)
        # [B, D, L]
        x = self.conv1d_encoder(x)
        if self.use_global_pos_enc:
            # [L, D] -> [D, L], broadcast over the batch
            x = x + self.pos_enc(x.transpose(1, 2)).transpose(0, 1)
        # [B, L, D] -> blocks -> [B, D, L]
        h = self.mossformer(x.transpose(1, 2)).transpose(1, 2)
        # [B, D, L]
        h = _group_norm(self.att_norm, h)
        if self.skip_around_mossformer:
            h = h + x
        # [B, D, L]
        h = self.prelu(h)
        # [B, S * D, L]
        h = self.conv1d_out(h)
        B, _, L = h.shape
        # [B * S, D, L]: speaker k owns channels [k * D, (k + 1) * D)
        h = h.reshape(B * self.num_spks, self.out_channels, L)
        # [B * S, D, L]: gated output layer
        h = self.output(h) * self.output_gate(h)
        # [B * S, N, L]
        h = self.conv1_decoder(h)
        # [B, S, N, L] -> [S, B, N, L], non-negative masks
        masks = F.relu(h.reshape(B, self.num_spks, self.in_channels, L))
        return masks.transpose(0, 1)

    def _stock_head(self):
        """True when the layers ``masks_channels_last`` reads the weights
        of (or computes by hand) are of their own types."""
        return _stock(
            (self.norm, nn.GroupNorm),
            (self.conv1d_encoder, nn.Conv1d),
            (self.att_norm, nn.GroupNorm),
            (self.prelu, nn.PReLU),
            (self.conv1d_out, nn.Conv1d),
            (self.output[0], nn.Conv1d),
            (self.output[1], nn.Tanh),
            (self.output_gate[0], nn.Conv1d),
            (self.output_gate[1], nn.Sigmoid),
            (self.conv1_decoder, nn.Conv1d),
        )

    def masks_channels_last(self, x):
        """``forward`` without autograd, channels-last: [B, N, L] -> masks
        [S, B, N, L] (contiguous).

        The same layers, the 1x1 convolutions as matrix products on
        [B, L, channels] activations (the layout the blocks work in, so no
        transposes around the stack), the output layers in place, and the
        last 1x1 convolution writing each speaker's masks straight into
        the [S, B, N, L] result. For a narrow mask net (width 32-64) the
        1x1 convolutions alone cost more than this whole head. The same
        numbers up to float rounding.

        Arguments
        ---------
        x : torch.Tensor
            Encoder output [B, N, L].

        Returns
        -------
        torch.Tensor
            Masks [S, B, N, L], contiguous.
        """
        B, _, L = x.shape
        S, D, N = self.num_spks, self.out_channels, self.in_channels
        # [B, N, L]
        x = self.norm(x)
        # [B, L, D]: the encoder-side 1x1 convolution
        x = torch.matmul(
            x.transpose(1, 2), self.conv1d_encoder.weight[:, :, 0].t()
        )
        if self.use_global_pos_enc:
            # [B, L, D] + [L, D]
            x = x + self.pos_enc(x)
        # [B, L, D]
        h = self.mossformer(x)
        # [B, L, D]: GroupNorm with one group, over all frames and channels
        h = group_norm_channels_last(h, self.att_norm)
        if self.skip_around_mossformer:
            h = h.add_(x)
        # [B, L, D]
        h = F.prelu(h, self.prelu.weight)
        # [B, L, S, D]: speaker k owns channels [k * D, (k + 1) * D)
        h = F.linear(
            h, self.conv1d_out.weight[:, :, 0], self.conv1d_out.bias
        ).view(B, L, S, D)
        # [B, L, S, D]: gated output layer
        out, gate = self.output[0], self.output_gate[0]
        h_out = F.linear(h, out.weight[:, :, 0], out.bias).tanh_()
        h = h_out.mul_(F.linear(h, gate.weight[:, :, 0], gate.bias).sigmoid_())
        # [S, B, N, L]: masks of speaker k = W_dec @ h[:, :, k]^T
        masks = h.new_empty(S, B, N, L)
        weight = self.conv1_decoder.weight[:, :, 0]
        for k in range(S):
            torch.matmul(weight, h[:, :, k].transpose(1, 2), out=masks[k])
        # [S, B, N, L], non-negative
        return masks.relu_()


def _group_norm(norm, x):
    """``norm(x)`` for ``x`` [B, C, L]; traced (ONNX export), a stock
    ``GroupNorm`` with one group is written out as ``group_norm_two_pass``
    instead of the exporter's ``InstanceNormalization``."""
    if (
        torch.jit.is_tracing()
        and type(norm) is nn.GroupNorm
        and norm.num_groups == 1
    ):
        return group_norm_two_pass(x, norm)
    return norm(x)


def group_norm_two_pass(x, norm):
    """``GroupNorm(1, C)`` of ``x`` [B, C, L], from the mean and then the
    mean square of the centred values (two passes), each averaged over
    the channels first and then over the frames.

    The ONNX exporter turns ``GroupNorm`` into ``InstanceNormalization``,
    which ONNX Runtime computes with a long running float32 sum; so it
    does ``ReduceMean`` over both axes at once. For features with a large
    mean against their spread, such as the encoder's ReLU outputs at 512
    channels, that loses 5.6e-4 after the first norm of the official
    model at 4003 samples (2.2e-3 at 24003), and 1.4e-4 on its estimates.
    Written out like this, ONNX Runtime stays within 4e-6 of float64 up
    to 60 s, as PyTorch does.

    Arguments
    ---------
    x : torch.Tensor
        Input [B, C, L].
    norm : torch.nn.GroupNorm
        One group, ``C`` channels (affine or not).

    Returns
    -------
    torch.Tensor
        ``norm(x)`` [B, C, L].

    Example
    -------
    >>> norm = nn.GroupNorm(1, 6, eps=1e-8)
    >>> x = 100 + torch.rand(2, 6, 9)
    >>> torch.allclose(group_norm_two_pass(x, norm), norm(x), atol=1e-4)
    True
    """
    # [B, 1, 1]: over the channels, then the frames
    mean = x.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
    # [B, C, L]
    centred = x - mean
    # [B, 1, 1]
    var = (centred * centred).mean(dim=1, keepdim=True).mean(
        dim=2, keepdim=True
    )
    # [B, C, L]
    y = centred * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        # [B, C, L]
        y = y * norm.weight[:, None] + norm.bias[:, None]
    return y


def group_norm_channels_last(h, norm):
    """``GroupNorm(1, D)`` of a channels-last ``h`` [B, L, D].

    One group: mean and variance over all frames and channels of each
    item, then the per-channel affine, as ``x * scale + shift``.

    Arguments
    ---------
    h : torch.Tensor
        Input [B, L, D].
    norm : torch.nn.GroupNorm
        The normalisation (one group, ``D`` channels, affine).

    Returns
    -------
    torch.Tensor
        ``norm(h.transpose(1, 2)).transpose(1, 2)``, contiguous [B, L, D].

    Example
    -------
    >>> norm = nn.GroupNorm(1, 6, eps=1e-8)
    >>> h = torch.randn(2, 9, 6)
    >>> ref = norm(h.transpose(1, 2)).transpose(1, 2)
    >>> torch.allclose(group_norm_channels_last(h, norm), ref, atol=1e-5)
    True
    """
    # [B, 1, 1] each
    var, mean = torch.var_mean(h, dim=(1, 2), correction=0, keepdim=True)
    # [B, 1, D]: weight / std
    scale = norm.weight * torch.rsqrt(var + norm.eps)
    # [B, L, D]
    return torch.addcmul(norm.bias - mean * scale, h, scale)


def check_input_length(mix, kernel_size, where="MossFormer"):
    """Raises a clear error for a mixture the encoder cannot take.

    That is a mixture that is not [B, T], an empty batch, or one shorter
    than one encoder frame.

    Arguments
    ---------
    mix : torch.Tensor
        Mixture [B, T].
    kernel_size : int
        Encoder kernel size (samples per frame).
    where : str
        Name used in the message.

    Example
    -------
    >>> check_input_length(torch.zeros(1, 16), 16)
    >>> try:
    ...     check_input_length(torch.zeros(1, 15), 16)
    ... except ValueError as err:
    ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
    MossFormer: the mixture has 15 samples, fewer than one encoder frame
    (16 samples); give at least 16 samples
    >>> try:
    ...     check_input_length(torch.zeros(0, 800), 16)
    ... except ValueError as err:
    ...     print(err)
    MossFormer: the batch is empty (mixture of shape (0, 800))
    """
    check_is_tensor(mix, where, "mixture [batch, time]")
    if mix.dim() != 2:
        raise ValueError(
            f"{where}: expected a mixture of shape [batch, time], got "
            f"shape {tuple(mix.shape)}"
        )
    if mix.shape[0] == 0:
        raise ValueError(
            f"{where}: the batch is empty (mixture of shape "
            f"{tuple(mix.shape)})"
        )
    if mix.shape[-1] < kernel_size:
        # [T, channels] as soundfile reads it, given as [batch, time]
        swapped = (
            f" (is it [time, channels]? give [batch, time], e.g. "
            f"x.T)" if mix.shape[0] >= kernel_size else ""
        )
        raise ValueError(
            f"{where}: the mixture has {mix.shape[-1]} samples, fewer than "
            f"one encoder frame ({kernel_size} samples); give at least "
            f"{kernel_size} samples{swapped}"
        )


def check_is_tensor(x, where, what):
    """Raises a clear ``TypeError`` when ``x`` is not a ``torch.Tensor``
    (a NumPy array or a list would fail deep inside torch).

    Arguments
    ---------
    x : object
        The input.
    where : str
        Name used in the message.
    what : str
        What the input should be, e.g. ``"mixture [batch, time]"``.

    Example
    -------
    >>> import numpy as np
    >>> check_is_tensor(torch.zeros(1, 16), "MossFormer", "mixture")
    >>> try:
    ...     check_is_tensor(np.zeros((1, 16)), "MossFormer", "mixture")
    ... except TypeError as err:
    ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
    MossFormer: expected the mixture as a torch.Tensor, got a
    numpy.ndarray (convert it, e.g. torch.as_tensor(x, dtype=torch.float32))
    """
    if not isinstance(x, torch.Tensor):
        kind = type(x)
        name = (kind.__name__ if kind.__module__ == "builtins"
                else f"{kind.__module__.split('.')[0]}.{kind.__name__}")
        raise TypeError(
            f"{where}: expected the {what} as a torch.Tensor, got a "
            f"{name} (convert it, e.g. torch.as_tensor(x, "
            "dtype=torch.float32))"
        )


def check_input_dtype(x, weight, where, what="input"):
    """Raises a clear error for an input the model's weights cannot take:
    not floating point, or another float type than ``weight``'s (when it
    is a tensor) outside autocast (e.g. the float64 array that
    ``soundfile.read`` returns, given to a float32 model), or float64
    against another type under autocast, which casts only float32.

    Arguments
    ---------
    x : torch.Tensor
        The input.
    weight : torch.Tensor or None
        A weight of the model (its dtype is the model's); None skips the
        comparison.
    where : str
        Name used in the message.
    what : str
        What the input is, for the message.

    Raises
    ------
    ValueError
        Naming both types.

    Example
    -------
    >>> w = torch.zeros(1)
    >>> check_input_dtype(torch.zeros(2), w, "MossFormer")
    >>> try:
    ...     check_input_dtype(torch.zeros(2, dtype=torch.float64), w,
    ...                       "MossFormer", "mixture")
    ... except ValueError as err:
    ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
    MossFormer: the mixture is torch.float64 but the model is torch.float32;
    convert one of them (e.g. mix.float())
    """
    if not x.is_floating_point():
        raise ValueError(
            f"{where}: expected a floating point {what}, got {x.dtype}"
        )
    if (
        isinstance(weight, torch.Tensor)
        and x.dtype != weight.dtype
        # autocast casts float32 inputs, never float64 ones
        and (not torch.is_autocast_enabled(x.device.type)
             or torch.float64 in (x.dtype, weight.dtype))
    ):
        raise ValueError(
            f"{where}: the {what} is {x.dtype} but the model is "
            f"{weight.dtype}; convert one of them (e.g. mix.float())"
        )


class MossFormerWrapper(nn.Module):
    """A whole MossFormer separator in one module: ``[B, T] -> [B, T, S]``.

    SpeechBrain's ``dual_path.Encoder`` (kernel 16, stride 8, ReLU), the
    MossFormer mask net and SpeechBrain's ``dual_path.Decoder``, like
    SpeechBrain's ``SepformerWrapper``. Defaults are MossFormer (L).

    Arguments
    ---------
    num_spks : int
        Number of speakers.
    encoder_kernel_size : int
        Encoder/decoder kernel (stride is half of it).
    encoder_out_nchannels : int
        Encoder channels N.
    masknet_out_channels : int, optional
        Model width inside the mask net (defaults to N).
    num_blocks : int
        Number of MossFormer blocks.
    group_size : int
        Frames per local-attention group.
    query_key_dim : int
        Query/key width.
    expansion_factor : float
        Hidden width factor.
    attn_dropout : float
        Dropout inside the blocks.
    activation_checkpointing : bool
        Recompute the blocks' activations in the backward pass instead of
        storing them (less training memory; see ``MossFormerStack``).

    Example
    -------
    >>> model = MossFormerWrapper(num_spks=2, encoder_out_nchannels=16,
    ...                           num_blocks=1, group_size=4, query_key_dim=8)
    >>> model(torch.randn(2, 100)).shape
    torch.Size([2, 100, 2])
    """

    def __init__(
        self,
        num_spks=2,
        encoder_kernel_size=16,
        encoder_out_nchannels=512,
        masknet_out_channels=None,
        num_blocks=24,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        attn_dropout=0.1,
        activation_checkpointing=False,
    ):
        super().__init__()
        # the decoder strides by half the kernel: at least 1
        encoder_kernel_size = _positive_int(
            "encoder_kernel_size", encoder_kernel_size, minimum=2
        )
        self.num_spks = num_spks
        self.kernel_size = encoder_kernel_size
        self.encoder = Encoder(
            kernel_size=encoder_kernel_size,
            out_channels=encoder_out_nchannels,
        )
        self.masknet = MossFormerMaskNet(
            in_channels=encoder_out_nchannels,
            out_channels=masknet_out_channels or encoder_out_nchannels,
            num_blocks=num_blocks,
            num_spks=num_spks,
            group_size=group_size,
            query_key_dim=query_key_dim,
            expansion_factor=expansion_factor,
            attn_dropout=attn_dropout,
            activation_checkpointing=activation_checkpointing,
        )
        self.decoder = Decoder(
            in_channels=encoder_out_nchannels,
            out_channels=1,
            kernel_size=encoder_kernel_size,
            stride=encoder_kernel_size // 2,
            bias=False,
        )

    def forward(self, mix):
        """Separates a batch of mixtures.

        Arguments
        ---------
        mix : torch.Tensor
            Mixtures [B, T], T >= ``kernel_size``.

        Returns
        -------
        torch.Tensor
            Estimates [B, T, num_spks].
        """
        check_input_length(mix, self.kernel_size, "MossFormerWrapper")
        check_input_dtype(
            mix,
            getattr(getattr(self.encoder, "conv1d", None), "weight", None),
            "MossFormerWrapper",
            "mixture",
        )
        return separate_with_modules(
            self.encoder, self.masknet, self.decoder, mix, self.num_spks
        )


def separate_with_modules(encoder, masknet, decoder, mix, num_spks):
    """Encoder -> masks -> decoder, padded or cropped to the input length.

    The forward pass of every MossFormer (and SepFormer) separator, shared by
    the wrapper, the recipes' Brain and the inference interface.

    Arguments
    ---------
    encoder, masknet, decoder : torch.nn.Module
        The three modules (``[B, T] -> [B, N, L]``,
        ``[B, N, L] -> [S, B, N, L]``, ``[B, N, L] -> [B, T']``).
    mix : torch.Tensor
        Mixture [B, T].
    num_spks : int
        Number of speakers.

    Returns
    -------
    torch.Tensor
        Estimates [B, T, num_spks].

    Example
    -------
    >>> model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                           group_size=4, query_key_dim=8)
    >>> est = separate_with_modules(model.encoder, model.masknet,
    ...                             model.decoder, torch.randn(1, 50), 2)
    >>> est.shape
    torch.Size([1, 50, 2])
    """
    # [B, N, L]
    mix_w = encoder(mix)
    # [S, B, N, L]
    masks = masknet(mix_w)
    if masks.shape[0] != num_spks:
        raise ValueError(
            f"the mask net makes masks for {masks.shape[0]} sources but "
            f"num_spks is {num_spks}: set num_spks in the yaml to the mask "
            "net's number of speakers"
        )
    # [S, B, N, L]
    separated = mix_w.unsqueeze(0) * masks
    # [B, T', S]
    est = decode_sources(decoder, separated)
    T, T_est = mix.shape[1], est.shape[1]
    if T_est <= T:
        # [B, T, S]: zero frames at the end. Also taken when T' == T, so
        # that a graph traced at any length pads by T - T' at every length
        # (SpeechBrain's encoder never makes T' > T)
        est = pad_time(est, T - T_est)
    else:
        # [B, T, S]: an encoder with padding
        est = est[:, :T, :]
    return est


def decode_sources(decoder, separated):
    """Decodes every source: [S, B, N, L] -> estimates [B, T', S].

    Without autograd, a decoder that is a plain one-channel transposed
    convolution (SpeechBrain's ``dual_path.Decoder`` or
    ``nn.ConvTranspose1d``, no padding, kernel a multiple of the stride,
    no hooks) runs for all sources at once as one batched matrix product
    (each frame's K output samples) and an overlap-add of the frames,
    ``kernel / stride`` of which overlap at every sample: the same numbers
    up to float rounding, several times faster on CPU than the transposed
    convolution called per source. Otherwise the decoder is called on each
    source.

    Arguments
    ---------
    decoder : torch.nn.Module
        ``[B, N, L] -> [B, T']`` (or ``[B, 1, T']``).
    separated : torch.Tensor
        Masked encoder outputs [S, B, N, L].

    Returns
    -------
    torch.Tensor
        Estimates [B, T', S].

    Example
    -------
    >>> decoder = Decoder(in_channels=8, out_channels=1, kernel_size=4,
    ...                   stride=2, bias=False)
    >>> separated = torch.randn(2, 3, 8, 10)
    >>> with torch.no_grad():
    ...     fast = decode_sources(decoder, separated)
    ...     ref = torch.stack([decoder(s) for s in separated], dim=-1)
    >>> fast.shape, torch.allclose(fast, ref, atol=1e-5)
    (torch.Size([3, 22, 2]), True)
    """
    S, B, N, L = separated.shape
    if not _overlap_add_ok(decoder):
        # S x [B, T'] -> [B, T', S]
        return torch.stack(
            [decoder(separated[k]).view(B, -1) for k in range(S)], dim=-1
        )
    stride, kernel = decoder.stride[0], decoder.kernel_size[0]
    overlap = kernel // stride
    # [S * B, L, K]: the output samples of each frame, all sources at once
    frames = torch.bmm(
        separated.reshape(S * B, N, L).transpose(1, 2),
        decoder.weight[:, 0, :].expand(S * B, N, kernel),
    )
    # [S * B, L + overlap - 1, stride]: frame t writes samples
    # [t * stride, t * stride + K), i.e. rows t .. t + overlap - 1
    out = frames.new_zeros(S * B, L + overlap - 1, stride)
    for j in range(overlap):
        out[:, j : j + L] += frames[..., j * stride : (j + 1) * stride]
    if decoder.bias is not None:
        out += decoder.bias
    # [S, B, T'] -> [B, T', S]
    return out.view(S, B, -1).permute(1, 2, 0).contiguous()


def _overlap_add_ok(decoder):
    """True when ``decode_sources`` may replace ``decoder`` (a plain
    one-channel transposed convolution, no autograd, no tracing, no
    hooks) by a matrix product and an overlap-add."""
    return (
        type(decoder) in (Decoder, nn.ConvTranspose1d)
        and _in_place_ok()
        and decoder.out_channels == 1
        and decoder.groups == 1
        and decoder.padding == (0,)
        and decoder.output_padding == (0,)
        and decoder.dilation == (1,)
        and decoder.padding_mode == "zeros"
        and decoder.kernel_size[0] % decoder.stride[0] == 0
        and not (decoder._forward_hooks or decoder._forward_pre_hooks)
        and not _hooks_inside(decoder)
    )


def count_parameters(module):
    """Number of trainable parameters of ``module``.

    Arguments
    ---------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    int

    Example
    -------
    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

