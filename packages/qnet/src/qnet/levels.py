"""Integer level sets ``Y`` of Quantization Networks (Sec. 3.1 of Yang et al., CVPR 2019).

A level set is a sorted tuple of distinct integers ``Y_0 < Y_1 < ... < Y_n``. The quantizer built on it is
``y = alpha * (sum_i s_i * A(beta * x - b_i) - o)`` with ``s_i = Y_i - Y_{i-1}`` (the step heights) and
``o = -Y_0`` (for a symmetric set this is the paper's ``o = sum_i s_i / 2``), so the hard output is exactly
``alpha * Y_k`` where ``k`` is the number of thresholds ``b_i`` passed by ``beta * x``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Levels", "LevelsLike"]


@dataclass(frozen=True)
class Levels:
    """A sorted set of integer quantization levels ``Y`` (Eq. 5 of the paper).

    Convention:
        Signed sets (``Y_0 < 0``) are used for weights, unsigned sets (``Y_0 = 0``) for ReLU activations.
        Every set has at least two levels and strictly increasing integer values.

    Args:
        values: the integer levels, strictly increasing.

    Raises:
        TypeError: a value is not an integer.
        ValueError: fewer than two levels, or not strictly increasing.

    Examples:
        >>> Levels.pow2(2).values
        (-4, -2, -1, 0, 1, 2, 4)
        >>> Levels.pow2(2).steps, Levels.pow2(2).offset
        ((2, 1, 1, 1, 1, 2), 4)
    """

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        vals = tuple(self.values)
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"Levels: 'values' must be integers; got {v!r} ({type(v).__name__})")
        if len(vals) < 2:
            raise ValueError(f"Levels: 'values' needs at least 2 levels; got {len(vals)}: {vals}")
        if any(b <= a for a, b in itertools.pairwise(vals)):
            raise ValueError(f"Levels: 'values' must be strictly increasing; got {vals}")
        object.__setattr__(self, "values", vals)

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def binary(cls) -> Levels:
        """``{-1, +1}``: binary weights (n = 1, s = 2, o = 1)."""
        return cls((-1, 1))

    @classmethod
    def ternary(cls) -> Levels:
        """``{-1, 0, +1}``: ternary weights (n = 2, s = 1, o = 1)."""
        return cls((-1, 0, 1))

    @classmethod
    def symmetric(cls, max_level: int) -> Levels:
        """``{-m, ..., m}``: the paper's ``3(±2)`` is ``symmetric(2)``, its ``5 bits`` is ``symmetric(15)``.

        Args:
            max_level: the largest level ``m`` (>= 1).
        """
        if isinstance(max_level, bool) or not isinstance(max_level, int) or max_level < 1:
            raise ValueError(f"Levels.symmetric: 'max_level' must be an integer >= 1; got {max_level!r}")
        return cls(tuple(range(-max_level, max_level + 1)))

    @classmethod
    def uniform(cls, bits: int, *, signed: bool = True) -> Levels:
        """Uniform ``bits``-bit set.

        Signed: ``{-(2^(bits-1) - 1), ..., 2^(bits-1) - 1}`` (``bits=1`` gives binary ``{-1, 1}``, ``bits=2``
        ternary, ``bits=5`` the paper's ``{-15..15}``). Unsigned (activations): ``{0, ..., 2^bits - 1}``.

        Args:
            bits: the bit width, 1 to 8.
            signed: symmetric signed set (weights) or non-negative set (activations).
        """
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"Levels.uniform: 'bits' must be an integer in [1, 8]; got {bits!r}")
        if not signed:
            return cls(tuple(range(2**bits)))
        if bits == 1:
            return cls.binary()
        return cls.symmetric(2 ** (bits - 1) - 1)

    @classmethod
    def pow2(cls, max_exponent: int) -> Levels:
        """Power-of-two set ``{-2^m, ..., -2, -1, 0, 1, 2, ..., 2^m}``; the paper's ``3(±4)`` is ``pow2(2)``.

        Args:
            max_exponent: ``m`` (0 to 7).
        """
        if isinstance(max_exponent, bool) or not isinstance(max_exponent, int) or not 0 <= max_exponent <= 7:
            raise ValueError(
                f"Levels.pow2: 'max_exponent' must be an integer in [0, 7]; got {max_exponent!r}"
            )
        pos = [2**e for e in range(max_exponent + 1)]
        return cls(tuple([-p for p in reversed(pos)] + [0] + pos))

    @classmethod
    def parse(cls, spec: LevelsLike) -> Levels:
        """Build a level set from a preset name, a sequence of integers or a ``Levels``.

        Names: ``"binary"``, ``"ternary"``, ``"pm2"`` (= ``{-2..2}``), ``"pm4"`` (= ``{-4,-2,-1,0,1,2,4}``),
        ``"int<k>"`` (signed uniform k-bit), ``"uint<k>"`` (unsigned k-bit), ``"pow2_<m>"``.

        Args:
            spec: the level specification.

        Raises:
            TypeError: ``spec`` has an unsupported type.
            ValueError: unknown name or invalid values.
        """
        if isinstance(spec, Levels):
            return spec
        if isinstance(spec, str):
            name = spec.strip().lower()
            fixed = {
                "binary": cls.binary,
                "ternary": cls.ternary,
                "pm2": lambda: cls.symmetric(2),
                "pm4": lambda: cls.pow2(2),
            }
            if name in fixed:
                return fixed[name]()
            m = re.fullmatch(r"(u?)int(\d+)", name)
            if m:
                return cls.uniform(int(m.group(2)), signed=not m.group(1))
            m = re.fullmatch(r"pow2_(\d+)", name)
            if m:
                return cls.pow2(int(m.group(1)))
            raise ValueError(
                "Levels.parse: unknown level set name "
                f"{spec!r}; expected 'binary', 'ternary', 'pm2', 'pm4', 'int<k>', 'uint<k>' or 'pow2_<m>'"
            )
        if isinstance(spec, Sequence):
            return cls(tuple(int(v) if isinstance(v, int) else v for v in spec))  # type: ignore[misc]
        raise TypeError(
            f"Levels.parse: 'spec' must be a Levels, a name or a sequence of ints; got {type(spec).__name__}"
        )

    # ---- derived quantities --------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of steps (thresholds), ``|Y| - 1``."""
        return len(self.values) - 1

    @property
    def steps(self) -> tuple[int, ...]:
        """Step heights ``s_i = Y_i - Y_{i-1}``, ``i = 1..n``."""
        return tuple(b - a for a, b in zip(self.values, self.values[1:]))

    @property
    def offset(self) -> int:
        """The offset ``o = -Y_0`` so that the hard output of level ``k`` is exactly ``Y_k``."""
        return -self.values[0]

    @property
    def max_abs(self) -> int:
        """``p = max |Y|``, used by the paper's initialisation ``beta = 5 p / (4 q)``."""
        return max(abs(v) for v in self.values)

    @property
    def signed(self) -> bool:
        """True when the set holds negative levels."""
        return self.values[0] < 0

    @property
    def bits(self) -> int:
        """Bits needed to store one level code, ``ceil(log2 |Y|)``."""
        return max(1, math.ceil(math.log2(len(self.values))))

    def __str__(self) -> str:
        return "{" + ",".join(str(v) for v in self.values) + "}"


LevelsLike = Levels | str | Sequence[int]
