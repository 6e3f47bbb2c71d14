"""Structured (re-sizing) and unstructured magnitude pruning of MossFormer.

Structured pruning follows Chee et al. (2021, "Performance optimizations on
deep noise suppression models", arXiv 2110.04378): every layer is *re-sized*
by removing its lowest-magnitude units, so the result is a smaller **dense**
MossFormer (a normal pretrained folder, loadable with SpeechBrain's stock
``SepformerSeparation.from_hparams`` and fine-tunable with a recipe's
``--init_from``); the sizes to keep are given per layer (the paper's
per-layer parameterisation), as numbers or as fractions. Unstructured
magnitude pruning (``torch.nn.utils.prune``) is provided as the control:
it zeros weights but keeps every shape, so it does not run faster.

What is pruned, and what is coupled (see ``structured_prune``):

* **Blocks**: whole MossFormer blocks, by the L1 norm of their output layer
  ``to_out``, or, with calibration audio, by their measured contribution
  ``||block(x) - x|| / ||x||`` or by greedy ablation (drop the block whose
  removal changes the separator's output least, repeat).
* **Hidden width** of each block: U/V channel *pairs*. Channel ``j`` of V
  and channel ``j`` of U are multiplied together in the gates and feed
  input ``j`` of ``to_out``, so a pair is one unit: rows ``j`` and
  ``E + j`` of ``to_hidden`` (linear, bias, depthwise conv) and column ``j``
  of ``to_out.linear``.
* **Query/key width** of each block: rows of ``to_qk`` (linear, bias,
  depthwise conv) and columns of the offset-scale ``gamma``/``beta``. The
  first ``r = min(32, query_key_dim)`` features carry the rotary position
  encoding (rotated in pairs with frequencies fixed by their index), so
  they are kept and only the others are pruned by magnitude, unless the
  new query/key width goes below ``r``: the rotary width is then the new
  width ``r'``, which must divide ``r``, and the rotary pairs kept are
  every ``(r / r')``-th one, whose frequencies a rotary of width ``r'``
  reproduces exactly (``theta**(-2j/r') = theta**(-2j(r/r')/r)``).
* **Model width** (``out_channels``): the residual stream of every block
  (``conv1d_encoder`` rows, ``to_hidden``/``to_qk`` columns, ``to_out``
  rows, the final LayerNorm, ``att_norm``, ``conv1d_out`` columns), chosen
  half from the token-shifted first half and half from the unshifted
  second half, order preserved, so each kept channel keeps its role; the
  per-speaker head channels (``conv1d_out`` rows of every speaker,
  ``output``/``output_gate`` columns) and the gated output channels
  (``output``/``output_gate`` rows, ``conv1_decoder`` columns) are chosen
  on their own scores. Width pruning is the one approximate step before
  fine-tuning: the sinusoidal position table, LayerNorm and GroupNorm
  statistics depend on the width.

A unit's score is the product, over the layers it couples, of its slice's
L1 norm divided by the mean slice L1 norm of that layer (so every layer
counts equally and a unit that any coupled layer ignores scores near 0).
After removing units, the ScaleNorm gains that read a pruned dimension are
rescaled so that the kept features are normalised as before (exact when
the removed features carry no energy; with calibration audio the measured
energy of the removed features is accounted for).

Command line::

    python -m speechbrain_mossformer.pruning PRETRAINED_DIR OUT_DIR \\
        --hidden-fraction 0.5 --num-blocks 3 [--config spec.yaml] ...

prints the sizes, the parameter counts and the recipe overrides that
fine-tune the pruned folder.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import json
import math
import os
import shlex
import sys

import torch

from speechbrain_mossformer.lobes.models.mossformer import rotary_width

__all__ = [
    "PruningError",
    "SPEC_KEYS",
    "model_sizes",
    "resolve_sizes",
    "unit_scores",
    "calibrate",
    "block_ablation",
    "structured_prune",
    "prune_pretrained",
    "unstructured_prune",
    "unstructured_prune_pretrained",
    "unstructured_amount",
    "count_parameters",
    "count_nonzero",
    "recipe_overrides",
    "read_pretrained",
    "main",
]

#: Keys a structured pruning spec may hold (explicit size or fraction).
SPEC_KEYS = (
    "num_blocks",
    "blocks_fraction",
    "out_channels",
    "width_fraction",
    "hidden_dims",
    "hidden_fraction",
    "query_key_dims",
    "qk_fraction",
)

#: How blocks may be chosen (see ``structured_prune``).
BLOCK_SCORES = ("l1", "contribution", "ablation")

_BLOCK = "mossformer.blocks.{}."


class PruningError(ValueError):
    """A pruning request is impossible; the message says why."""


# ----------------------------------------------------------------------
# Sizes
def model_sizes(config):
    """The per-layer sizes of a MossFormer configuration.

    Arguments
    ---------
    config : dict
        Model configuration (``speechbrain_mossformer.pretrained``).

    Returns
    -------
    dict
        ``out_channels``, ``num_blocks``, ``hidden_dims`` (list),
        ``query_key_dims`` (list) and ``rotary_dim``.

    Example
    -------
    >>> s = model_sizes({"out_channels": 16, "num_blocks": 2,
    ...                  "query_key_dim": 8, "expansion_factor": 4.0})
    >>> s["hidden_dims"], s["query_key_dims"], s["rotary_dim"]
    ([64, 64], [8, 8], 8)
    """
    width = int(config["out_channels"])
    blocks = int(config["num_blocks"])
    hidden = config.get("hidden_dims")
    if hidden is None:
        factor = float(config.get("expansion_factor", 4.0))
        hidden = [int(width * factor)] * blocks
    qk = config.get("query_key_dims")
    if qk is None:
        qk = [int(config.get("query_key_dim", 128))] * blocks
    hidden, qk = [int(h) for h in hidden], [int(q) for q in qk]
    if not len(hidden) == len(qk) == blocks:
        raise PruningError(
            f"the configuration has {blocks} blocks but {len(hidden)} "
            f"hidden_dims and {len(qk)} query_key_dims"
        )
    rotary = rotary_width(qk) if blocks else 0
    return {
        "out_channels": width,
        "num_blocks": blocks,
        "hidden_dims": hidden,
        "query_key_dims": qk,
        "rotary_dim": rotary,
    }


def _fraction(spec, key):
    """Reads a fraction in (0, 1] from the spec (or None)."""
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PruningError(f"{key} must be a number, got {value!r}")
    if not 0.0 < float(value) <= 1.0:
        raise PruningError(f"{key} must be in (0, 1], got {value}")
    return float(value)


def _exclusive(spec, size_key, fraction_key):
    """Raises if both a size and a fraction are given for one dimension."""
    if spec.get(size_key) is not None and spec.get(fraction_key) is not None:
        raise PruningError(
            f"give either {size_key} or {fraction_key}, not both"
        )


def _per_block(value, n, key):
    """An int or a list of ints -> a list of ``n`` ints."""
    if isinstance(value, bool):
        raise PruningError(f"{key} must be an integer or a list of them")
    if isinstance(value, int):
        return [value] * n
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise PruningError(
            f"{key} must be an integer or a list of integers, got {value!r}"
        )
    if len(value) != n:
        raise PruningError(
            f"{key} has {len(value)} entries but the pruned model has {n} "
            "blocks (one entry per kept block, in order)"
        )
    return [int(v) for v in value]


def resolve_sizes(config, spec):
    """Turns a pruning spec into the target per-layer sizes.

    Arguments
    ---------
    config : dict
        Configuration of the model to prune.
    spec : dict
        Any of ``SPEC_KEYS``; a dimension not named keeps its size.
        ``num_blocks`` (int) or ``blocks_fraction``; ``out_channels`` (even
        int) or ``width_fraction``; ``hidden_dims`` (even int or one per
        kept block) or ``hidden_fraction`` (of the U/V pairs);
        ``query_key_dims`` (int or one per kept block; below the rotary
        width only as an even divisor of it, see the module docstring) or
        ``qk_fraction`` (of the non-rotary features). Fractions are in
        (0, 1] and are rounded to the nearest valid size.

    Returns
    -------
    dict
        Target ``out_channels``, ``num_blocks``, and, per *kept* block, a
        fraction or size: ``hidden_dims`` / ``hidden_fraction`` and
        ``query_key_dims`` / ``qk_fraction`` (the lists are resolved once
        the blocks are chosen, by ``structured_prune``).

    Example
    -------
    >>> cfg = {"out_channels": 64, "num_blocks": 4, "query_key_dim": 32}
    >>> t = resolve_sizes(cfg, {"width_fraction": 0.75, "num_blocks": 2})
    >>> t["out_channels"], t["num_blocks"]
    (48, 2)
    >>> try:
    ...     resolve_sizes(cfg, {"num_blocks": 5})
    ... except PruningError as err:
    ...     print(err)
    num_blocks=5 is more than the 4 blocks of the model
    """
    if not isinstance(spec, dict):
        raise PruningError(f"the pruning spec must be a mapping, got {spec!r}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise PruningError(
            f"unknown pruning spec keys {unknown}; known keys are "
            f"{list(SPEC_KEYS)}"
        )
    sizes = model_sizes(config)
    for size_key, frac_key in (
        ("num_blocks", "blocks_fraction"),
        ("out_channels", "width_fraction"),
        ("hidden_dims", "hidden_fraction"),
        ("query_key_dims", "qk_fraction"),
    ):
        _exclusive(spec, size_key, frac_key)

    blocks = sizes["num_blocks"]
    if spec.get("num_blocks") is not None:
        new_blocks = spec["num_blocks"]
        if isinstance(new_blocks, bool) or not isinstance(new_blocks, int):
            raise PruningError(
                f"num_blocks must be an integer, got {new_blocks!r}"
            )
    elif spec.get("blocks_fraction") is not None:
        new_blocks = max(1, round(blocks * _fraction(spec, "blocks_fraction")))
    else:
        new_blocks = blocks
    if new_blocks > blocks:
        raise PruningError(
            f"num_blocks={new_blocks} is more than the {blocks} blocks of "
            "the model"
        )
    if new_blocks < 1:
        raise PruningError(f"num_blocks must be at least 1, got {new_blocks}")

    width = sizes["out_channels"]
    if spec.get("out_channels") is not None:
        new_width = spec["out_channels"]
        if isinstance(new_width, bool) or not isinstance(new_width, int):
            raise PruningError(
                f"out_channels must be an integer, got {new_width!r}"
            )
        if new_width % 2:
            raise PruningError(
                f"out_channels must be even (the token shift moves the "
                f"first half of the channels), got {new_width}"
            )
    elif spec.get("width_fraction") is not None:
        half = round(width // 2 * _fraction(spec, "width_fraction"))
        new_width = 2 * max(1, half)
    else:
        new_width = width
    if new_width > width:
        raise PruningError(
            f"out_channels={new_width} is more than the model's {width}"
        )
    if new_width < 2:
        raise PruningError(f"out_channels must be at least 2, got {new_width}")

    target = {"out_channels": new_width, "num_blocks": new_blocks}
    if spec.get("hidden_dims") is not None:
        hidden = _per_block(spec["hidden_dims"], new_blocks, "hidden_dims")
        for h in hidden:
            if h % 2 or h < 2:
                raise PruningError(
                    "hidden_dims must be even and at least 2 (V and U are "
                    f"its two halves), got {h}"
                )
        target["hidden_dims"] = hidden
    else:
        target["hidden_fraction"] = _fraction(spec, "hidden_fraction") or 1.0
    if spec.get("query_key_dims") is not None:
        qk = _per_block(spec["query_key_dims"], new_blocks, "query_key_dims")
        for q in qk:
            if q < 1:
                raise PruningError(
                    f"query_key_dims must be positive, got {q}"
                )
        rotary, new_rotary = sizes["rotary_dim"], rotary_width(qk)
        if new_rotary < rotary and (new_rotary % 2 or rotary % new_rotary):
            raise PruningError(
                f"query_key_dims {min(qk)} is below the rotary width "
                f"{rotary}: it must then be an even divisor of {rotary} "
                f"(e.g. {rotary // 2}), so that the kept rotary pairs, "
                f"every ({rotary}/q)-th one, keep their frequencies"
            )
        target["query_key_dims"] = qk
    else:
        target["qk_fraction"] = _fraction(spec, "qk_fraction") or 1.0
    return target


# ----------------------------------------------------------------------
# Scores
def _l1_rows(weight):
    """L1 norm of each output unit (dim 0) of a weight tensor."""
    return weight.detach().abs().reshape(weight.shape[0], -1).sum(1)


def _l1_cols(weight):
    """L1 norm of each input unit (dim 1) of a Linear/Conv1d weight."""
    w = weight.detach().abs()
    return w.transpose(0, 1).reshape(w.shape[1], -1).sum(1)


def _normalized(values):
    """Divides by the mean (so layers of different scale count equally)."""
    mean = values.mean()
    return values / mean if mean > 0 else torch.ones_like(values)


def _coupled(*groups):
    """Product over groups of the normalised sum within each group.

    Each group is a list of per-unit L1 vectors of the layers that
    produce (or consume) the unit.
    """
    score = None
    for group in groups:
        total = sum(_normalized(v.double()) for v in group)
        part = _normalized(total)
        score = part if score is None else score * part
    return score


def unit_scores(config, masknet_state):
    """L1-magnitude scores of every prunable unit of a mask net.

    Arguments
    ---------
    config : dict
        Model configuration.
    masknet_state : dict
        State dict of the ``MossFormerMaskNet``.

    Returns
    -------
    dict
        ``blocks`` [num_blocks]; ``hidden`` (list, per block, [E] scores of
        the U/V pairs); ``qk`` (list, per block, [Dqk]); ``width``
        [out_channels] (residual stream); ``head`` [out_channels]
        (per-speaker head channels); ``gate`` [out_channels] (gated
        output channels). Higher means more important.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerMaskNet)
    >>> net = MossFormerMaskNet(16, 16, num_blocks=2, group_size=4,
    ...                         query_key_dim=8)
    >>> cfg = {"out_channels": 16, "num_blocks": 2, "query_key_dim": 8}
    >>> s = unit_scores(cfg, net.state_dict())
    >>> s["blocks"].shape, s["hidden"][0].shape, s["width"].shape
    (torch.Size([2]), torch.Size([32]), torch.Size([16]))
    """
    sd = masknet_state
    sizes = model_sizes(config)
    width = sizes["out_channels"]
    num_spks = sd["conv1d_out.weight"].shape[0] // width
    blocks, hidden, qk = [], [], []
    producers = [_l1_rows(sd["conv1d_encoder.weight"])]
    consumers = [_l1_cols(sd["conv1d_out.weight"])]
    for b in range(sizes["num_blocks"]):
        p = _BLOCK.format(b)
        w_hid = sd[p + "to_hidden.linear.weight"]
        b_hid = sd[p + "to_hidden.linear.bias"]
        w_out = sd[p + "to_out.linear.weight"]
        b_out = sd[p + "to_out.linear.bias"]
        g_out = sd[p + "to_out.norm.g"].abs().sum()
        blocks.append(
            float(g_out * w_out.abs().sum() + b_out.abs().sum())
        )
        e = w_hid.shape[0] // 2
        rows = _l1_rows(w_hid) + b_hid.detach().abs()
        hidden.append(
            _coupled([rows[:e]], [rows[e:]], [_l1_cols(w_out)]).float()
        )
        w_qk = sd[p + "to_qk.linear.weight"]
        b_qk = sd[p + "to_qk.linear.bias"]
        gamma = sd[p + "qk_offset_scale.gamma"]
        qk.append(
            _coupled(
                [_l1_rows(w_qk) + b_qk.detach().abs()], [_l1_cols(gamma)]
            ).float()
        )
        producers.append(_l1_rows(w_out) + b_out.detach().abs())
        consumers.append(_l1_cols(w_hid))
        consumers.append(_l1_cols(w_qk))
    width_scores = _coupled(producers, consumers).float()
    w_heads = sd["conv1d_out.weight"].detach().abs()
    b_heads = sd["conv1d_out.bias"].detach().abs()
    head_rows = (
        w_heads.reshape(num_spks, width, -1).sum((0, 2))
        + b_heads.reshape(num_spks, width).sum(0)
    )
    head = _coupled(
        [head_rows],
        [_l1_cols(sd["output.0.weight"]), _l1_cols(sd["output_gate.0.weight"])],
    ).float()
    gate = _coupled(
        [_l1_rows(sd["output.0.weight"]) + sd["output.0.bias"].abs()],
        [_l1_cols(sd["conv1_decoder.weight"])],
    ).float()
    return {
        "blocks": torch.tensor(blocks),
        "hidden": hidden,
        "qk": qk,
        "width": width_scores,
        "head": head,
        "gate": gate,
    }


def _top(scores, k, offset=0):
    """Sorted indices (plus ``offset``) of the ``k`` largest scores.

    Ties go to the lower index, so keeping everything is the identity.
    """
    order = torch.argsort(-scores, stable=True)[:k]
    return torch.sort(order).values + offset


# ----------------------------------------------------------------------
# Calibration
def _build_modules(config, state_dicts):
    """Builds encoder/masknet/decoder of ``config`` with ``state_dicts``."""
    from speechbrain_mossformer.pretrained import (
        check_state_dict,
        load_modules,
        render_hyperparams,
    )

    modules = load_modules(render_hyperparams(config))
    for name, module in modules.items():
        try:
            check_state_dict(module, state_dicts[name], name)
        except ValueError as err:
            raise PruningError(
                f"the checkpoints do not match the configuration: {err}"
            ) from None
        module.load_state_dict(state_dicts[name])
        module.eval()
    return modules


def calibrate(config, state_dicts, mixtures):
    """Activation statistics of a model on a few mixtures.

    Arguments
    ---------
    config : dict
        Model configuration.
    state_dicts : dict
        ``{"encoder": sd, "masknet": sd, "decoder": sd}``.
    mixtures : list of torch.Tensor
        Mixtures [T] (or one [B, T] tensor) at the model's sample rate.

    Returns
    -------
    dict
        ``stream_energy`` (per block, [out_channels]: summed squares of the
        token-shifted block input, what ``to_hidden``/``to_qk`` normalise),
        ``hidden_energy`` (per block, [E]: summed squares of the gated
        ``to_out`` input) and ``contribution`` [num_blocks] (mean of
        ``||block(x) - x|| / ||x||`` over frames).

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams)
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 2,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> sds = {k: m.state_dict() for k, m in mods.items()}
    >>> stats = calibrate(cfg, sds, [torch.randn(400)])
    >>> stats["contribution"].shape, stats["hidden_energy"][0].shape
    (torch.Size([2]), torch.Size([32]))
    """
    from speechbrain_mossformer.lobes.models.mossformer import token_shift

    modules = _build_modules(config, state_dicts)
    masknet = modules["masknet"]
    blocks = masknet.mossformer.blocks
    sizes = model_sizes(config)
    stream = [torch.zeros(sizes["out_channels"], dtype=torch.float64)
              for _ in blocks]
    hidden = [torch.zeros(h // 2, dtype=torch.float64)
              for h in sizes["hidden_dims"]]
    contrib = torch.zeros(len(blocks), dtype=torch.float64)
    frames = [0]
    handles = []

    def block_hook(b):
        def hook(module, args, output):
            x = args[0].detach()
            output = output.detach()
            shifted = token_shift(x).double()
            stream[b] += shifted.pow(2).sum((0, 1))
            ratio = (output.double() - x.double()).norm(dim=-1) / (
                x.double().norm(dim=-1).clamp(min=1e-8)
            )
            contrib[b] += ratio.sum()
            if b == 0:
                frames[0] += x.shape[0] * x.shape[1]

        return hook

    def out_hook(b):
        def hook(module, args):
            hidden[b] += args[0].detach().double().pow(2).sum((0, 1))

        return hook

    for b, block in enumerate(blocks):
        handles.append(block.register_forward_hook(block_hook(b)))
        handles.append(block.to_out.register_forward_pre_hook(out_hook(b)))
    try:
        for mix in _as_batches(mixtures):
            _plain_forward(modules, mix)
    finally:
        for handle in handles:
            handle.remove()
    if frames[0] == 0:
        raise PruningError("calibration needs at least one mixture")
    return {
        "stream_energy": stream,
        "hidden_energy": hidden,
        "contribution": (contrib / frames[0]).float(),
    }


def _as_batches(mixtures):
    """Calibration mixtures -> a list of [1, T] float tensors."""
    if torch.is_tensor(mixtures):
        mixtures = list(mixtures) if mixtures.dim() == 2 else [mixtures]
    out = [
        torch.as_tensor(m, dtype=torch.float32).reshape(1, -1)
        for m in mixtures
    ]
    if not out:
        raise PruningError("calibration needs at least one mixture")
    return out


def _plain_forward(modules, mix):
    """Separates ``mix`` [1, T] with autograd on, so the model takes its
    plain (training) path: no in-place work or shared buffers that hooks
    could observe half-way."""
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    masknet = modules["masknet"]
    with torch.enable_grad():
        est = separate_with_modules(
            modules["encoder"], masknet, modules["decoder"], mix,
            masknet.num_spks,
        )
    return est.detach()


def block_ablation(config, state_dicts, mixtures, num_blocks):
    """Chooses blocks to keep by measured output change (greedy).

    Blocks are removed one at a time; each time the one whose removal
    (the block replaced by the identity, its residual branch dropped)
    changes the separator's estimates least, measured as
    ``mean ||y' - y||^2 / ||y||^2`` over the mixtures against the unpruned
    model's estimates ``y``.

    Arguments
    ---------
    config : dict
        Model configuration.
    state_dicts : dict
        ``{"encoder": sd, "masknet": sd, "decoder": sd}``.
    mixtures : list of torch.Tensor
        Calibration mixtures [T].
    num_blocks : int
        Number of blocks to keep.

    Returns
    -------
    tuple
        ``(kept, distortion)``: the kept block indices (sorted) and the
        measured distortion with only those blocks.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams)
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 3,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> sds = {k: m.state_dict() for k, m in mods.items()}
    >>> kept, distortion = block_ablation(cfg, sds, [torch.randn(400)], 2)
    >>> len(kept), distortion >= 0
    (2, True)
    """
    modules = _build_modules(config, state_dicts)
    blocks = modules["masknet"].mossformer.blocks
    mixtures = _as_batches(mixtures)
    skipped = set()
    handles = []

    def skip_hook(b):
        def hook(module, args, output):
            # identity: the block's input goes on unchanged
            return args[0] if b in skipped else output

        return hook

    for b, block in enumerate(blocks):
        handles.append(block.register_forward_hook(skip_hook(b)))
    try:
        reference = [_plain_forward(modules, mix) for mix in mixtures]

        def distortion():
            total = 0.0
            for mix, ref in zip(mixtures, reference):
                est = _plain_forward(modules, mix)
                total += float(
                    (est - ref).pow(2).sum() / ref.pow(2).sum().clamp(1e-12)
                )
            return total / len(mixtures)

        best_value = 0.0
        while len(blocks) - len(skipped) > num_blocks:
            trials = []
            for b in range(len(blocks)):
                if b in skipped:
                    continue
                skipped.add(b)
                trials.append((distortion(), b))
                skipped.discard(b)
            best_value, best = min(trials)
            skipped.add(best)
    finally:
        for handle in handles:
            handle.remove()
    kept = [b for b in range(len(blocks)) if b not in skipped]
    return kept, best_value


# ----------------------------------------------------------------------
# Structured pruning
def _round_units(count, fraction, minimum=1):
    """``round(count * fraction)``, at least ``minimum``."""
    return max(minimum, min(count, int(round(count * fraction))))


def _gain(full, kept, energy=None, index=None):
    """ScaleNorm gain factor after keeping ``kept`` of ``full`` features.

    ``sqrt(full / kept * kept_energy / total_energy)``; without energy
    statistics the removed features are assumed silent (ratio 1).
    """
    ratio = 1.0
    if energy is not None and float(energy.sum()) > 0:
        ratio = float(energy[index].sum() / energy.sum())
    return math.sqrt(full / kept * ratio)


def structured_prune(config, state_dicts, spec, calibration=None,
                     block_score="l1"):
    """Prunes a MossFormer into a smaller dense one (L1 magnitude).

    Arguments
    ---------
    config : dict
        Configuration of the trained model
        (``speechbrain_mossformer.pretrained.DEFAULT_CONFIG`` keys).
    state_dicts : dict
        ``{"encoder": sd, "masknet": sd, "decoder": sd}``.
    spec : dict
        Target sizes or fractions (see ``resolve_sizes``), e.g.
        ``{"num_blocks": 2, "hidden_fraction": 0.5, "out_channels": 48}``.
    calibration : list of torch.Tensor, optional
        A few mixtures: then the ScaleNorm gains account for the measured
        energy of the removed features, and the ``"contribution"`` and
        ``"ablation"`` block scores are possible.
    block_score : str
        How blocks are chosen: ``"l1"`` (``|g| * ||W||_1 + ||b||_1`` of
        ``to_out``), ``"contribution"`` (measured ``||block(x) - x|| /
        ||x||``) or ``"ablation"`` (greedy: drop the block whose removal
        changes the output least, see ``block_ablation``); the last two
        need ``calibration``.

    Returns
    -------
    tuple
        ``(new_config, new_state_dicts, report)``; ``report`` holds the
        kept indices: ``blocks``, ``width``, ``head``, ``gate``, ``hidden``
        (per kept block, the kept U/V pairs), ``qk`` (per kept block).

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams)
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 2,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> sds = {k: m.state_dict() for k, m in mods.items()}
    >>> new_cfg, new_sds, report = structured_prune(
    ...     cfg, sds, {"num_blocks": 1, "hidden_fraction": 0.5,
    ...                "out_channels": 12})
    >>> new_cfg["num_blocks"], new_cfg["out_channels"], new_cfg["hidden_dims"]
    (1, 12, [32])
    >>> new_sds["masknet"]["mossformer.blocks.0.to_out.linear.weight"].shape
    torch.Size([12, 16])
    """
    if block_score not in BLOCK_SCORES:
        raise PruningError(
            f"block_score must be one of {BLOCK_SCORES}, got {block_score!r}"
        )
    if block_score != "l1" and calibration is None:
        raise PruningError(
            f"block_score={block_score!r} needs calibration mixtures"
        )
    for name in ("encoder", "masknet", "decoder"):
        if name not in state_dicts:
            raise PruningError(f"no state dict given for module '{name}'")
    sizes = model_sizes(config)
    target = resolve_sizes(config, spec)
    _build_modules(config, state_dicts)  # checks they fit
    sd = state_dicts["masknet"]
    width = sizes["out_channels"]
    if sd["conv1d_encoder.weight"].shape[0] != width:
        raise PruningError(
            f"the masknet state dict has width "
            f"{sd['conv1d_encoder.weight'].shape[0]} but the configuration "
            f"says out_channels={width}"
        )
    scores = unit_scores(config, sd)
    stats = calibrate(config, state_dicts, calibration) if (
        calibration is not None
    ) else None

    # Blocks
    if block_score == "ablation":
        kept_blocks, _ = block_ablation(
            config, state_dicts, calibration, target["num_blocks"]
        )
    else:
        block_values = (
            stats["contribution"] if block_score == "contribution"
            else scores["blocks"]
        )
        kept_blocks = _top(block_values, target["num_blocks"]).tolist()
    old_qk = [sizes["query_key_dims"][b] for b in kept_blocks]
    old_hidden = [sizes["hidden_dims"][b] for b in kept_blocks]
    rotary = sizes["rotary_dim"]

    # Per-block hidden and query/key sizes
    if "hidden_dims" in target:
        new_hidden = target["hidden_dims"]
    else:
        new_hidden = [
            2 * _round_units(h // 2, target["hidden_fraction"])
            for h in old_hidden
        ]
    if "query_key_dims" in target:
        new_qk = target["query_key_dims"]
    else:
        new_qk = [
            rotary + _round_units(q - rotary, target["qk_fraction"], 0)
            for q in old_qk
        ]
    # [new_rotary]: the rotary features kept, pairs every `step` pairs
    new_rotary = rotary_width(new_qk)
    if new_rotary > rotary:
        # the blocks of the smallest query/key width were dropped: the kept
        # ones' unrotated features would become rotated
        dropped = sorted(set(range(sizes["num_blocks"])) - set(kept_blocks))
        raise PruningError(
            f"dropping blocks {dropped} leaves query/key widths {new_qk}, "
            f"whose rotary width would be {new_rotary}, more than the "
            f"model's {rotary} (it is min(32, smallest query_key_dim)): "
            f"give a kept block a query/key width of at most {rotary} "
            "(--query-key-dims), or keep more blocks (--num-blocks), so "
            "that one of the smallest query/key width stays"
        )
    step = rotary // new_rotary
    rotary_feats = torch.arange(new_rotary)
    rotary_feats = (rotary_feats // 2) * 2 * step + rotary_feats % 2
    for i, b in enumerate(kept_blocks):
        if new_hidden[i] > old_hidden[i]:
            raise PruningError(
                f"hidden_dims[{i}]={new_hidden[i]} is more than block "
                f"{b}'s hidden width {old_hidden[i]}"
            )
        if new_qk[i] > old_qk[i]:
            raise PruningError(
                f"query_key_dims[{i}]={new_qk[i]} is more than block "
                f"{b}'s query/key width {old_qk[i]}"
            )
        if new_qk[i] - new_rotary > old_qk[i] - rotary:
            raise PruningError(
                f"query_key_dims[{i}]={new_qk[i]}: with the rotary width "
                f"going from {rotary} to {new_rotary}, block {b} can keep "
                f"at most {new_rotary + old_qk[i] - rotary} features (the "
                "dropped rotary pairs cannot become unrotated ones)"
            )

    # Model width: half from each half of the residual stream
    new_width = target["out_channels"]
    half = width // 2
    keep_w = torch.cat(
        (
            _top(scores["width"][:half], new_width // 2),
            _top(scores["width"][half:], new_width // 2, half),
        )
    )
    keep_head = _top(scores["head"], new_width)
    keep_gate = _top(scores["gate"], new_width)
    num_spks = sd["conv1d_out.weight"].shape[0] // width

    new = dict(sd)
    new["conv1d_encoder.weight"] = sd["conv1d_encoder.weight"][keep_w]
    for key in ("mossformer.norm", "att_norm"):
        new[key + ".weight"] = sd[key + ".weight"][keep_w]
        new[key + ".bias"] = sd[key + ".bias"][keep_w]
    head_rows = torch.cat([keep_head + k * width for k in range(num_spks)])
    new["conv1d_out.weight"] = sd["conv1d_out.weight"][head_rows][:, keep_w]
    new["conv1d_out.bias"] = sd["conv1d_out.bias"][head_rows]
    for key in ("output.0", "output_gate.0"):
        new[key + ".weight"] = sd[key + ".weight"][keep_gate][:, keep_head]
        new[key + ".bias"] = sd[key + ".bias"][keep_gate]
    new["conv1_decoder.weight"] = sd["conv1_decoder.weight"][:, keep_gate]

    # Blocks: drop, then re-size each kept block
    for key in list(new):
        if key.startswith("mossformer.blocks."):
            del new[key]
    kept_pairs, kept_qk = [], []
    for i, b in enumerate(kept_blocks):
        p, q = _BLOCK.format(b), _BLOCK.format(i)
        e = old_hidden[i] // 2
        pairs = _top(scores["hidden"][b], new_hidden[i] // 2)
        hidden_rows = torch.cat((pairs, pairs + e))
        feats = torch.cat(
            (
                rotary_feats,
                _top(scores["qk"][b][rotary:], new_qk[i] - new_rotary, rotary),
            )
        )
        kept_pairs.append(pairs.tolist())
        kept_qk.append(feats.tolist())
        stream_energy = stats["stream_energy"][b] if stats else None
        hidden_energy = stats["hidden_energy"][b] if stats else None
        gain_in = _gain(width, new_width, stream_energy, keep_w)
        gain_out = _gain(e, len(pairs), hidden_energy, pairs)
        for name, rows, gain in (
            ("to_hidden", hidden_rows, gain_in),
            ("to_qk", feats, gain_in),
        ):
            new[q + name + ".norm.g"] = sd[p + name + ".norm.g"] * gain
            new[q + name + ".linear.weight"] = (
                sd[p + name + ".linear.weight"][rows][:, keep_w]
            )
            new[q + name + ".linear.bias"] = sd[p + name + ".linear.bias"][rows]
            new[q + name + ".conv.depthwise.weight"] = (
                sd[p + name + ".conv.depthwise.weight"][rows]
            )
        for name in ("gamma", "beta"):
            key = "qk_offset_scale." + name
            new[q + key] = sd[p + key][:, feats]
        new[q + "to_out.norm.g"] = sd[p + "to_out.norm.g"] * gain_out
        new[q + "to_out.linear.weight"] = (
            sd[p + "to_out.linear.weight"][keep_w][:, pairs]
        )
        new[q + "to_out.linear.bias"] = sd[p + "to_out.linear.bias"][keep_w]
        new[q + "to_out.conv.depthwise.weight"] = (
            sd[p + "to_out.conv.depthwise.weight"][keep_w]
        )
        for key, value in sd.items():
            # anything else a block may hold (none today), unchanged
            if key.startswith(p) and q + key[len(p):] not in new:
                new[q + key[len(p):]] = value

    new_config = dict(config)
    new_config.update(
        out_channels=new_width,
        num_blocks=len(kept_blocks),
        hidden_dims=[int(h) for h in new_hidden],
        query_key_dims=[int(x) for x in new_qk],
        query_key_dim=int(max(new_qk)),
    )
    new_states = {
        "encoder": dict(state_dicts["encoder"]),
        "masknet": {k: v.detach().clone() for k, v in new.items()},
        "decoder": dict(state_dicts["decoder"]),
    }
    report = {
        "blocks": kept_blocks,
        "width": keep_w.tolist(),
        "head": keep_head.tolist(),
        "gate": keep_gate.tolist(),
        "hidden": kept_pairs,
        "qk": kept_qk,
        "calibrated": stats is not None,
        "block_score": block_score,
    }
    return new_config, new_states, report


# ----------------------------------------------------------------------
# Pretrained folders
def read_pretrained_config(folder):
    """The model configuration of a pretrained folder (its yaml only).

    Arguments
    ---------
    folder : str
        A pretrained folder.

    Returns
    -------
    dict
        The model configuration, ``sample_rate`` as an int.

    Example
    -------
    >>> read_pretrained_config("no/such/folder")
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.pruning.PruningError: no/such/folder: no such pretrained folder
    """
    from speechbrain_mossformer.export_checkpoint import (
        ExportError,
        read_model_config,
    )

    if not os.path.isdir(folder):
        raise PruningError(f"{folder}: no such pretrained folder")
    try:
        config = read_model_config(os.path.join(folder, "hyperparams.yaml"))
    except ExportError as err:
        raise PruningError(str(err)) from None
    config["sample_rate"] = int(config["sample_rate"])
    return config


def read_pretrained(folder):
    """Reads the configuration and state dicts of a pretrained folder.

    Arguments
    ---------
    folder : str
        A pretrained folder (``hyperparams.yaml``, ``encoder.ckpt``,
        ``masknet.ckpt``, ``decoder.ckpt``).

    Returns
    -------
    tuple
        ``(config, state_dicts)``.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams, write_pretrained_folder)
    >>> folder = str(getfixture("tmpdir"))
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(folder, cfg,
    ...     {k: m.state_dict() for k, m in mods.items()})
    >>> config, states = read_pretrained(folder)
    >>> config["num_blocks"], config["hidden_dims"], sorted(states)
    (1, None, ['decoder', 'encoder', 'masknet'])
    >>> count_parameters(states) == count_parameters(mods)
    True
    """
    from speechbrain_mossformer.export_checkpoint import (
        ExportError,
        load_checkpoint_states,
    )

    config = read_pretrained_config(folder)
    try:
        states = load_checkpoint_states(folder)
    except ExportError as err:
        hint = ""
        if os.path.isdir(os.path.join(folder, "save")):
            hint = (
                f" (this is a recipe's run folder: make a pretrained folder "
                f"of it with python -m speechbrain_mossformer."
                f"export_checkpoint {folder} OUT_DIR, then prune OUT_DIR)"
            )
        raise PruningError(f"{err}{hint}") from None
    try:
        _build_modules(config, states)  # checks they fit
    except PruningError as err:
        raise PruningError(f"{folder}: {err}") from None
    return config, states


def _check_output(source, out_dir):
    """Refuses an output folder that would overwrite the source, a folder
    this package did not write (see ``check_output_folder``) or another
    model: a pretrained folder is replaced only when it was pruned from a
    folder of the same name (pruning the same model again)."""
    from speechbrain_mossformer.pretrained import (
        OutputFolderError,
        check_output_folder,
        folder_origin,
    )

    try:
        check_output_folder(out_dir, protected=(source,))
    except OutputFolderError as err:
        raise PruningError(str(err)) from None
    origin = folder_origin(out_dir)
    name = os.path.basename(os.path.normpath(source))
    if origin is not None and not (
        "pruning" in origin and f" of {name}" in origin
    ):
        # e.g. the two folder arguments swapped: a trained model there
        raise PruningError(
            f"{out_dir}: holds another model ({origin}), which pruning "
            f"{source} would replace: give another output folder (or "
            "remove that one first)"
        )


def _write(out_dir, config, states, origin):
    """Writes a pretrained folder (``write_pretrained_folder``)."""
    from speechbrain_mossformer.pretrained import (
        OutputFolderError,
        write_pretrained_folder,
    )

    try:
        write_pretrained_folder(out_dir, config, states, origin=origin)
    except OutputFolderError as err:
        raise PruningError(str(err)) from None


def prune_pretrained(source, out_dir, spec, calibration=None,
                     block_score="l1"):
    """Structured pruning of a pretrained folder into a new one.

    Arguments
    ---------
    source : str
        Pretrained folder of the trained model.
    out_dir : str
        Pretrained folder to write (the smaller dense model).
    spec : dict
        Target sizes or fractions (see ``resolve_sizes``).
    calibration : list of torch.Tensor, optional
        Mixtures for the energy-aware gains / block contributions.
    block_score : str
        ``"l1"``, ``"contribution"`` or ``"ablation"``.

    Returns
    -------
    dict
        ``config`` (of the pruned model), ``report`` (kept indices),
        ``params`` (before, after) and ``overrides`` (recipe arguments).

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams, write_pretrained_folder)
    >>> tmp = str(getfixture("tmpdir"))
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 2,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(tmp + "/dense", cfg,
    ...     {k: m.state_dict() for k, m in mods.items()})
    >>> out = prune_pretrained(tmp + "/dense", tmp + "/small",
    ...                        {"hidden_fraction": 0.5})
    >>> out["config"]["hidden_dims"], out["params"][1] < out["params"][0]
    ([32, 32], True)
    """
    _check_output(source, out_dir)
    config, states = read_pretrained(source)
    new_config, new_states, report = structured_prune(
        config, states, spec, calibration, block_score
    )
    origin = (
        f"structured L1 pruning of {os.path.basename(os.path.normpath(source))}"
        f" with {json.dumps(spec, sort_keys=True)}"
    )
    _write(out_dir, new_config, new_states, origin)
    return {
        "config": new_config,
        "report": report,
        "params": (count_parameters(states), count_parameters(new_states)),
        "overrides": recipe_overrides(new_config),
    }


# ----------------------------------------------------------------------
# Unstructured pruning (the control)
def _prunable(masknet):
    """(module, "weight") pairs: every Linear and Conv1d of a mask net."""
    return [
        (m, "weight")
        for m in masknet.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))
    ]


def unstructured_prune(modules, amount, scope="global"):
    """Zeros the smallest-magnitude mask-net weights, in place.

    ``torch.nn.utils.prune`` L1 unstructured pruning of every Linear and
    Conv1d weight of the mask net (biases, norms and the encoder/decoder
    are left alone), made permanent with ``prune.remove``: the model keeps
    its shapes and dense kernels, so it does not run faster.

    Arguments
    ---------
    modules : dict or torch.nn.Module
        ``{"masknet": ...}`` (or the mask net itself).
    amount : float
        Fraction of the prunable weights to zero, in [0, 1).
    scope : str
        ``"global"`` (one threshold over all prunable weights,
        ``prune.global_unstructured``) or ``"layer"`` (``amount`` of each
        weight, ``prune.l1_unstructured``).

    Returns
    -------
    int
        Number of weights zeroed.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerMaskNet)
    >>> net = MossFormerMaskNet(16, 16, num_blocks=1, group_size=4,
    ...                         query_key_dim=8)
    >>> before = count_nonzero(net)
    >>> zeroed = unstructured_prune(net, 0.5)
    >>> count_nonzero(net) == before - zeroed
    True
    """
    import torch.nn.utils.prune as prune

    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise PruningError(f"amount must be a number, got {amount!r}")
    if not 0.0 <= float(amount) < 1.0:
        raise PruningError(f"amount must be in [0, 1), got {amount}")
    if scope not in ("global", "layer"):
        raise PruningError(f"scope must be 'global' or 'layer', got {scope!r}")
    masknet = modules["masknet"] if isinstance(modules, dict) else modules
    params = _prunable(masknet)
    before = sum(int((m.weight != 0).sum()) for m, _ in params)
    if scope == "global":
        prune.global_unstructured(
            params, pruning_method=prune.L1Unstructured, amount=float(amount)
        )
    else:
        for module, name in params:
            prune.l1_unstructured(module, name, amount=float(amount))
    for module, name in params:
        prune.remove(module, name)
    after = sum(int((m.weight != 0).sum()) for m, _ in params)
    return before - after


def unstructured_amount(modules, target_params):
    """Fraction of prunable weights to zero to leave ``target_params``.

    The count is over all trainable parameters of ``modules`` (encoder,
    mask net, decoder), nonzero ones after pruning.

    Arguments
    ---------
    modules : dict
        ``{"encoder": ..., "masknet": ..., "decoder": ...}``.
    target_params : int
        Wanted number of nonzero parameters (e.g. a structurally pruned
        model's parameter count).

    Returns
    -------
    float
        The ``amount`` for ``unstructured_prune``.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerWrapper)
    >>> m = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                       group_size=4, query_key_dim=8)
    >>> mods = {"encoder": m.encoder, "masknet": m.masknet,
    ...         "decoder": m.decoder}
    >>> total = count_parameters(mods)
    >>> amount = unstructured_amount(mods, total // 2)
    >>> _ = unstructured_prune(mods, amount)
    >>> abs(count_nonzero(mods) - total // 2) <= 1
    True
    """
    total = count_nonzero(modules)
    prunable = sum(m.weight.numel() for m, _ in _prunable(modules["masknet"]))
    remove = total - int(target_params)
    if remove < 0:
        raise PruningError(
            f"the model has {total} nonzero parameters, fewer than the "
            f"target {target_params}"
        )
    if remove >= prunable:
        raise PruningError(
            f"cannot reach {target_params} parameters by pruning the "
            f"{prunable} mask-net weights of a {total}-parameter model"
        )
    return remove / prunable


def unstructured_prune_pretrained(source, out_dir, amount, scope="global"):
    """Unstructured pruning of a pretrained folder into a new one.

    Arguments
    ---------
    source : str
        Pretrained folder.
    out_dir : str
        Pretrained folder to write (same shapes, zeros made permanent).
    amount : float
        Fraction of the mask-net Linear/Conv1d weights to zero.
    scope : str
        ``"global"`` or ``"layer"``.

    Returns
    -------
    dict
        ``config``, ``zeroed`` and ``nonzero`` (parameters left).

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams, write_pretrained_folder)
    >>> tmp = str(getfixture("tmpdir"))
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(tmp + "/dense", cfg,
    ...     {k: m.state_dict() for k, m in mods.items()})
    >>> out = unstructured_prune_pretrained(tmp + "/dense", tmp + "/sparse",
    ...                                     0.5)
    >>> out["zeroed"], out["nonzero"]
    (2348, 3097)
    >>> sparse = read_pretrained(tmp + "/sparse")[1]  # same shapes, zeros
    >>> count_parameters(sparse), count_nonzero(sparse)
    (5525, 3097)
    """
    _check_output(source, out_dir)
    config, states = read_pretrained(source)
    modules = _build_modules(config, states)
    zeroed = unstructured_prune(modules, amount, scope)
    _write(
        out_dir,
        config,
        {k: m.state_dict() for k, m in modules.items()},
        f"unstructured L1 pruning ({scope}, amount {amount:.4f}) of "
        f"{os.path.basename(os.path.normpath(source))}",
    )
    return {
        "config": config,
        "zeroed": zeroed,
        "nonzero": count_nonzero(modules),
    }


# ----------------------------------------------------------------------
# Counting and recipe arguments
def _tensors(obj):
    """Trainable tensors of a module, a dict of modules or of state dicts."""
    if isinstance(obj, torch.nn.Module):
        return [p for p in obj.parameters() if p.requires_grad]
    if isinstance(obj, dict):
        out = []
        for value in obj.values():
            if torch.is_tensor(value):
                out.append(value)
            else:
                out.extend(_tensors(value))
        return out
    raise TypeError(f"cannot count the parameters of {type(obj).__name__}")


def count_parameters(obj):
    """Number of parameters of a module, dict of modules or state dicts.

    Example
    -------
    >>> count_parameters({"a": torch.nn.Linear(3, 2)})
    8
    """
    return sum(t.numel() for t in _tensors(obj))


def count_nonzero(obj):
    """Number of nonzero parameters (after unstructured pruning).

    Example
    -------
    >>> lin = torch.nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = lin.weight.zero_()
    >>> count_nonzero(lin)
    2
    """
    return sum(int((t != 0).sum()) for t in _tensors(obj))


def recipe_overrides(config):
    """Recipe arguments that build the model of ``config``.

    Give them to a separation recipe with ``--init_from=<folder>`` to
    fine-tune a pruned folder (the recipe loads it strictly). With a
    ``sample_rate`` in ``config`` (a pretrained folder's), it is one of
    them: the recipes' yamls default to 8 kHz.

    Arguments
    ---------
    config : dict
        Model configuration.

    Returns
    -------
    list of str
        ``--key=value`` arguments (lists without spaces).

    Example
    -------
    >>> recipe_overrides({"N_encoder_out": 64, "out_channels": 48,
    ...     "num_blocks": 2, "group_size": 128, "query_key_dim": 32,
    ...     "kernel_size": 16, "hidden_dims": [96, 128],
    ...     "query_key_dims": [32, 32]})[-2:]
    ['--hidden_dims=[96,128]', '--query_key_dims=[32,32]']
    >>> recipe_overrides({"N_encoder_out": 64, "out_channels": 48,
    ...     "num_blocks": 2, "group_size": 128, "query_key_dim": 32,
    ...     "sample_rate": 16000})[-1]
    '--sample_rate=16000'
    """
    sizes = model_sizes(config)
    kernel = int(config.get("kernel_size", 16))
    args = [
        f"--num_spks={int(config.get('num_spks', 2))}",
        f"--N_encoder_out={int(config['N_encoder_out'])}",
        f"--out_channels={sizes['out_channels']}",
        f"--num_blocks={sizes['num_blocks']}",
        f"--group_size={int(config['group_size'])}",
        f"--query_key_dim={int(config['query_key_dim'])}",
        f"--kernel_size={kernel}",
        f"--kernel_stride={kernel // 2}",
        "--hidden_dims=[" + ",".join(map(str, sizes["hidden_dims"])) + "]",
        "--query_key_dims=["
        + ",".join(map(str, sizes["query_key_dims"]))
        + "]",
    ]
    if config.get("sample_rate") is not None:
        args.append(f"--sample_rate={int(config['sample_rate'])}")
    return args


# ----------------------------------------------------------------------
# Command line
def _read_spec_file(path):
    """Reads a json or yaml pruning spec."""
    if not os.path.isfile(path):
        raise PruningError(f"{path}: no such spec file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise PruningError(f"{path}: cannot read the spec file ({err})") \
            from None
    if path.endswith(".json"):
        try:
            spec = json.loads(text)
        except ValueError as err:
            raise PruningError(f"{path}: not valid JSON ({err})") from None
    else:
        import yaml

        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as err:
            first = " ".join(str(err).split())
            raise PruningError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(spec, dict):
        raise PruningError(f"{path}: the spec must be a mapping")
    # "hidden_fraction: null" is not given (YAML's way to leave one out)
    return {key: value for key, value in spec.items() if value is not None}


def _int_list(text):
    """``"96,128"`` -> [96, 128]; ``"96"`` -> 96."""
    parts = [p for p in text.replace(" ", "").strip("[]").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or a comma-separated list, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _read_mixtures(paths, sample_rate, kernel_size=16):
    """Reads calibration mixtures at the model's sample rate (resampled
    and downmixed to mono as needed, each with a note on stderr).

    Files are checked like ``mossformer-separate``'s inputs (missing,
    unreadable, empty, NaN/Inf, shorter than one encoder frame after
    resampling): a ``PruningError`` names the file and the problem.
    """
    from speechbrain_mossformer.inference import (
        AudioInputError,
        open_audio,
    )

    mixtures = []
    for path in paths:
        try:
            audio = open_audio(path)
            signal = torch.cat(list(audio.blocks()), dim=1)[0].numpy()
        except AudioInputError as err:
            raise PruningError(f"calibration file {err}") from None
        rate = audio.sample_rate
        changes = ([f"resampled from {rate} to {sample_rate} Hz"]
                   if rate != sample_rate else []) + (
            [f"downmixed from {audio.channels} channels to mono"]
            if audio.channels > 1 else [])
        if changes:  # as mossformer-separate reads its inputs
            print(f"note: calibration file {path}: {', '.join(changes)}",
                  file=sys.stderr)
        if rate != sample_rate:
            from scipy.signal import resample_poly

            g = math.gcd(int(rate), int(sample_rate))
            signal = resample_poly(signal, sample_rate // g, rate // g)
        if signal.shape[0] < kernel_size:
            raise PruningError(
                f"calibration file {path}: too short: {audio.frames} "
                f"samples at {rate} Hz; at least one encoder frame "
                f"({kernel_size} samples at {sample_rate} Hz) is needed"
            )
        mixtures.append(torch.as_tensor(signal, dtype=torch.float32))
    return mixtures


def main(argv=None):
    """Command line entry point; returns the exit code (0 ok, 2 error)."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.pruning",
        description="Prune a MossFormer pretrained folder: structured L1 "
        "pruning into a smaller dense model (default), or unstructured "
        "magnitude pruning (--unstructured).",
    )
    parser.add_argument("pretrained_dir", help="pretrained folder to prune")
    parser.add_argument("out_dir", help="pretrained folder to write")
    parser.add_argument("--config", metavar="FILE",
                        help="json/yaml spec with any of " + ", ".join(
                            SPEC_KEYS) + " (command-line options win)")
    parser.add_argument("--num-blocks", type=int,
                        help="blocks to keep (chosen by --block-score)")
    parser.add_argument("--blocks-fraction", type=float,
                        help="fraction of the blocks to keep, in (0, 1]")
    parser.add_argument("--out-channels", type=int,
                        help="model width (the blocks' residual stream)")
    parser.add_argument("--width-fraction", type=float,
                        help="fraction of the model width to keep")
    parser.add_argument("--hidden-dims", type=_int_list,
                        help="hidden width (to_hidden/to_out): an even int "
                        "or a list, one per kept block")
    parser.add_argument("--hidden-fraction", type=float,
                        help="fraction of each block's hidden width to keep")
    parser.add_argument("--query-key-dims", type=_int_list,
                        help="query/key width: an int or a list, one per "
                        "kept block")
    parser.add_argument("--qk-fraction", type=float,
                        help="fraction to keep of the query/key features "
                        "beyond the rotary width (the rotary ones are "
                        "kept; --query-key-dims goes below it)")
    parser.add_argument("--block-score", choices=BLOCK_SCORES,
                        default="l1",
                        help="how blocks are chosen; contribution and "
                        "ablation need --calibration")
    parser.add_argument("--calibration", nargs="+", metavar="WAV",
                        help="mixtures for energy-aware gains and the "
                        "contribution/ablation block scores")
    parser.add_argument("--unstructured", type=float, metavar="AMOUNT",
                        help="instead: zero this fraction of the mask-net "
                        "weights (same shapes, no speedup)")
    parser.add_argument("--scope", choices=("global", "layer"),
                        default="global",
                        help="unstructured pruning threshold scope (with "
                        "--unstructured only)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        if args.unstructured is None and args.scope != "global":
            raise PruningError(
                "--scope applies to --unstructured only (the threshold of "
                "the unstructured control)"
            )
        if args.unstructured is not None:
            structured = [
                "--" + key.replace("_", "-")
                for key in SPEC_KEYS + ("config", "calibration")
                if getattr(args, key) is not None
            ] + (["--block-score"] if args.block_score != "l1" else [])
            if structured:
                raise PruningError(
                    f"--unstructured zeros weights and keeps every shape; "
                    f"it does not use {', '.join(structured)} (structured "
                    "pruning options): give one or the other"
                )
            out = unstructured_prune_pretrained(
                args.pretrained_dir, args.out_dir, args.unstructured,
                args.scope,
            )
            print(
                f"zeroed {out['zeroed']} weights; {out['nonzero']} nonzero "
                f"parameters left; wrote {args.out_dir} (same shapes: the "
                "control, not faster; measure it)"
            )
            return 0
        spec = _read_spec_file(args.config) if args.config else {}
        for key in SPEC_KEYS:
            value = getattr(args, key)
            if value is not None:
                spec[key] = value
                # an option replaces the other form from the file
                other = {
                    "num_blocks": "blocks_fraction",
                    "blocks_fraction": "num_blocks",
                    "out_channels": "width_fraction",
                    "width_fraction": "out_channels",
                    "hidden_dims": "hidden_fraction",
                    "hidden_fraction": "hidden_dims",
                    "query_key_dims": "qk_fraction",
                    "qk_fraction": "query_key_dims",
                }[key]
                if getattr(args, other) is None:
                    spec.pop(other, None)
        if not spec:
            where = (f"{args.config} gives no size or fraction"
                     if args.config else "give sizes or fractions (e.g. "
                     "--hidden-fraction 0.5) or --config")
            raise PruningError(f"nothing to prune: {where}")
        calibration = None
        if args.calibration:
            config = read_pretrained_config(args.pretrained_dir)
            calibration = _read_mixtures(
                args.calibration, int(config["sample_rate"]),
                int(config["kernel_size"]),
            )
        out = prune_pretrained(
            args.pretrained_dir, args.out_dir, spec, calibration,
            args.block_score,
        )
    except PruningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = out["config"]
    before, after = out["params"]
    print(f"wrote {args.out_dir}")
    print(
        f"kept blocks {out['report']['blocks']}; out_channels "
        f"{cfg['out_channels']}; hidden_dims {cfg['hidden_dims']}; "
        f"query_key_dims {cfg['query_key_dims']}"
    )
    print(
        f"parameters: {before} -> {after} ({after / before:.1%}); "
        "measure the speed, parameters are not time"
    )
    if after == before:
        print(
            "note: nothing was pruned: the sizes asked for are the model's "
            "own (--qk-fraction prunes only the query/key features beyond "
            "the rotary width, and --query-key-dims goes below it)",
            file=sys.stderr,
        )
    print("fine-tune with a recipe, e.g. (from the repository's root):")
    # the LibriMix yaml of the model's speaker count (3 for 3 or more)
    mix = "Libri3Mix" if int(cfg.get("num_spks", 2)) >= 3 else "Libri2Mix"
    # absolute: the recipe is run from the repository, not from here
    init = shlex.quote(os.path.abspath(args.out_dir))
    print(
        "  python recipes/LibriMix/separation/train.py "
        f"recipes/LibriMix/separation/hparams/mossformer-{mix.lower()}.yaml "
        f"--data_folder=<{mix}> --init_from={init} "
        + " ".join(f"'{a}'" if "[" in a else a for a in out["overrides"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
