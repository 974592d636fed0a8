"""Array types of the project: NumPy arrays named by the kind of their values.

NumPy's scalar types take their bit width as a type parameter (``np.integer[_8Bit]``), and the width is
invariant, so "an integer array of any width" can only be written with ``Any``. It is written once here; the
other modules name arrays by these aliases or by a concrete dtype (``NDArray[np.uint8]``). The aliases are
strings because NumPy's scalar types take no parameters at run time (``np.generic[Any]`` is for the checker).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

Integers: TypeAlias = "NDArray[np.integer[Any]]"  # class ids, codes, counts, indices: any integer width
Floats: TypeAlias = "NDArray[np.floating[Any]]"  # reflectance, fractions, weights, coordinates: any float width
Numbers: TypeAlias = "NDArray[np.number[Any]]"  # integer or float values alike (sums, band values before a cast)
Mask: TypeAlias = "NDArray[np.bool_]"
Values: TypeAlias = "NDArray[np.generic[Any]]"  # any dtype: arrays passed through as they are (codes read from a file)
