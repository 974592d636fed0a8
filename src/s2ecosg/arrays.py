"""Array types of the project: NumPy arrays named by the kind of their values.

NumPy's scalar types take their bit width as a type parameter (``np.integer[_8Bit]``), and the width is
invariant, so "an integer array of any width" can only be written with ``Any``. It is written once here; the
other modules name arrays by these aliases or by a concrete dtype (``NDArray[np.uint8]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Integers = NDArray[np.integer[Any]]  # class ids, codes, counts, indices: any integer width
Floats = NDArray[np.floating[Any]]  # reflectance, fractions, weights, coordinates: any float width
Numbers = NDArray[np.number[Any]]  # integer or float values alike (sums, band values before a cast)
Mask = NDArray[np.bool_]
Values = NDArray[np.generic[Any]]  # any dtype: arrays passed through unchanged (a writer's values, a sparse copy)
