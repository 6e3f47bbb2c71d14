"""One-line error messages.

The command lines and the recipes report a problem as one line naming the
file and what is wrong; errors raised by torch, soundfile or yaml readers
often carry several lines (or none). ``first_line`` is the part shown.

Authors
 * speechbrain-mossformer contributors 2026
"""


def first_line(err):
    """First line of an exception's message (its type name if it has none).

    A ``KeyError`` of a bare key reads ``missing key '<key>'``.

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
    """
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        key = str(err.args[0])
        text = key if " " in key else f"missing key {key!r}"
    return text.splitlines()[0] if text else type(err).__name__
