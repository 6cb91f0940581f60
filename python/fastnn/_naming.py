"""The one registry of automatic names, as Keras numbers its objects: per base name, the
first is ``conv2d``, then ``conv2d_1``, ``conv2d_2``, ... Layers and models draw from it;
``utils.clear_session()`` resets it."""

import collections

_counts = collections.Counter()


def unique_name(base):
    """``base`` the first time, then ``base_1``, ``base_2``, ..."""
    count = _counts[base]
    _counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def clear():
    """Start every base name's numbering afresh."""
    _counts.clear()
