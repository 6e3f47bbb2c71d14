"""One-line error messages.

The command lines and the recipes report a problem as one line naming the
file and what is wrong; errors raised by torch, soundfile or yaml readers
often carry several lines (or none). ``first_line`` is the part shown.

Authors
 * speechbrain-mossformer contributors 2026
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster preempting a job, ``torchrun`` stopping
    its workers), raised like Ctrl-C so that whatever stops on Ctrl-C
    (training with a checkpoint, the command lines removing their partial
    files) stops the same way; catch it before ``KeyboardInterrupt`` to
    tell the two apart (exit code 143 rather than 130)."""


def raise_terminated(signum, frame):
    """SIGTERM handler that raises ``Terminated``.

    Example
    -------
    >>> import signal
    >>> previous = signal.signal(signal.SIGTERM, raise_terminated)
    >>> try:
    ...     signal.raise_signal(signal.SIGTERM)
    ... except Terminated:
    ...     print("terminated")
    terminated
    >>> _ = signal.signal(signal.SIGTERM, previous)
    """
    raise Terminated


def first_line(err):
    """First line of an exception's message (its type name if it has none).

    A ``KeyError`` of a bare key reads ``missing key '<key>'``; a yaml
    syntax error (ruamel's or PyYAML's, whose first line is often only the
    context, e.g. ``while parsing a block mapping``) reads ``line L, column
    C: <problem>`` (the caller names the file).

    Arguments
    ---------
    err : BaseException
        The exception.

    Returns
    -------
    str
        One line.

    Example
    -------
    >>> first_line(ValueError("bad header\\n  details..."))
    'bad header'
    >>> first_line(KeyError("num_spks"))
    "missing key 'num_spks'"
    >>> first_line(RuntimeError())
    'RuntimeError'
    >>> import yaml
    >>> try:
    ...     yaml.safe_load("a: 1\\n b: [2\\nc: 3\\n")
    ... except yaml.YAMLError as err:
    ...     print(first_line(err))
    line 2, column 3: mapping values are not allowed here
    """
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        key = str(err.args[0])
        text = key if " " in key else f"missing key {key!r}"
    return text.splitlines()[0] if text else type(err).__name__


def device_problem(device):
    """Why ``device`` cannot be used on this machine, or ``None``.

    Arguments
    ---------
    device : str or torch.device or None
        A device name as given on a command line (``None``: the default).

    Returns
    -------
    str or None
        One line naming the problem.

    Example
    -------
    >>> device_problem("cpu") is None
    True
    >>> device_problem("gpu")
    "unknown device 'gpu' (use cpu, cuda or cuda:N)"
    """
    import torch

    if device is None:
        return None
    device = str(device)
    if device == "cpu" or device.startswith("cpu:") and device[4:].isdigit():
        return None
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"device '{device}' requested but CUDA is not available"
        if ":" in device:
            index = device.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                return (
                    f"device '{device}' does not exist "
                    f"({torch.cuda.device_count()} CUDA devices)"
                )
        return None
    if device.startswith("mps"):
        if not torch.backends.mps.is_available():
            return f"device '{device}' is not available"
        return None
    return f"unknown device '{device}' (use cpu, cuda or cuda:N)"
