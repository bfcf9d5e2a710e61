r"""LaTeX structures the fast path must read, not compare as text: matrices, relations, named equations.

A text comparison may only ever say *equal* for these (identical strings are identical answers); when two of them
differ as text, the verdict comes from their entries (a matrix read entry by entry) or from math-verify, never from
the text. So `\begin{pmatrix}1&0\\0&1\end{pmatrix}`, `\left[\begin{array}{cc}1&0\\0&1\end{array}\right]` and
`\begin{bmatrix}1 & 0 \\ 0 & 1\end{bmatrix}` are one matrix, `x \geq 5` is `x >= 5`, and the gold
`\frac{NO}{BO}=\frac{1}{\sqrt{6}}` is answered by `\frac{1}{\sqrt{6}}`.
"""

from __future__ import annotations

import re

# `vmatrix` is a determinant (a number), not a matrix: it is never read as one.
_MATRIX_RE = re.compile(
    r"^\s*(?:\\left\s*[(\[]\s*|[(\[]\s*)?\\begin\{(pmatrix|bmatrix|Bmatrix|matrix|smallmatrix|array)\}"
    r"(?:\{[^{}]*\})?(.*?)\\end\{\1\}\s*(?:\\right\s*[)\]]|[)\]])?\s*$",
    re.DOTALL,
)
MAX_CELLS = 64


def matrix_cells(text: str) -> list[list[str]] | None:
    """Rows of cells of a matrix written in any of the usual environments, or None if `text` is not one matrix."""
    m = _MATRIX_RE.match(text)
    if m is None or "\\begin" in m.group(2):
        return None
    body = m.group(2).strip()
    rows = [r for r in re.split(r"\\\\(?:\[[^\]]*\])?", body) if r.strip() and r.strip() != "\\hline"]
    cells = [[c.strip() for c in row.replace("\\hline", "").split("&")] for row in rows]
    if not cells or sum(len(r) for r in cells) > MAX_CELLS or len({len(r) for r in cells}) != 1:
        return None
    return cells


def is_structure(text: str) -> bool:
    r"""Does the answer hold a LaTeX structure (matrix, set, interval, union, relation, equation, `\pm`)?"""
    return bool(_STRUCTURE_RE.search(text))


_STRUCTURE_RE = re.compile(
    r"\\begin\{|\\\{|\\cup|\\cap|\\in(?![a-z])|\\infty|\\pm|\\mp|=|<|>|\\[lg]eq?(?![a-z])|\\neq|\\ne(?![a-z])"
    r"|\\[lg]t(?![a-z])|^[(\[].*,.*[)\]]$"
)

_RELATIONS = (
    (re.compile(r"\\geq?(?![a-zA-Z])|\\geqslant|>="), "\\ge "),
    (re.compile(r"\\leq?(?![a-zA-Z])|\\leqslant|<="), "\\le "),
    (re.compile(r"\\neq?(?![a-zA-Z])|!="), "\\neq "),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
)


def canonical_relation(text: str) -> str:
    r"""One spelling per relation: `>=`, `\geq`, `\geqslant` -> `\ge`; `\lt` -> `<`; `!=`, `\ne` -> `\neq`."""
    for regex, repl in _RELATIONS:
        text = regex.sub(lambda _, r=repl: r, text)  # a function: `\g` in a template is a group reference
    return re.sub(r"\s+", "", text)


def _top_level(text: str, chars: str) -> list[int]:
    """Positions of `chars` outside (), [], {}, |…| in `text`."""
    out, depth, bars = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            bars ^= 1
        elif ch in chars and depth == 0 and not bars:
            out.append(i)
    return out


def _is_name(lhs: str) -> bool:
    r"""Is the left side of `lhs = value` the name of a quantity (`x`, `AB`, `|AB|`, `\frac{NO}{BO}`, `S_{ABC}:S`,
    `f(2)`, a determinant) rather than an expression (`2x + z`, `11a+c`, `7`)?"""
    s = lhs.strip()
    if not s or s[0].isdigit() or s[0] in "+-.":
        return False
    if "\\begin{vmatrix}" in s or "\\det" in s:
        return True
    if any(i > 0 for i in _top_level(s, "+-")) or re.search(r"\\pm|\\mp|\\cdot\s*\d", s):
        return False
    return bool(re.search(r"[A-Za-z]", re.sub(r"\\[a-zA-Z]+", "", s)))


def named_value(text: str) -> tuple[str, str] | None:
    r"""(`name`, `value`) for `name = value` or a chain `name = … = value`; None for other equations.

    `|AB| = 1` -> (`|AB|`, `1`); `x = 5 + 5 + 1 = 11` -> (`x`, `11`); `2x + z = 1` -> None (an equation, not a
    named value); `x \le 3` -> None.
    """
    if re.search(r"[<>]|\\[lg]eq?(?![a-z])|\\neq|!=|\\approx", text):
        return None
    eqs = _top_level(text, "=")
    if not eqs:
        return None
    lhs, value = text[: eqs[0]], text[eqs[-1] + 1:]
    if not value.strip() or not _is_name(lhs):
        return None
    return lhs.strip(), value.strip()
