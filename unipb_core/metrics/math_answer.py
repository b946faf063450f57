r"""Comparing math answers without a judge: LaTeX clean-up, safe numeric evaluation, tolerant equality.

MathVista and MATH-Vision free-form answers are numbers, simple expressions (``\frac{3}{4}``, ``2\sqrt{3}``)
or short words. The official MATH-V script compares cleaned strings and then numbers through
``latex2sympy``; that package is not a dependency here, so :func:`evaluate` covers the arithmetic subset that
real answers use (fractions, roots, powers, pi, products) with a whitelist AST walk -- never ``eval``.
Symbolic answers outside that subset (intervals, matrices, expressions with variables) fall back to exact
comparison of the cleaned strings.
"""

from __future__ import annotations

import ast
import math
import operator
import re

from unipb_core.metrics.extract import answer_span, extract_number

# Spacing and sizing commands that carry no value.
_DROP = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", r"\$", "$", r"\%")
# The only units MATH-V's find_math_answer removes (after lowercasing); "cm", "m", "degrees" ... stay.
_OFFICIAL_UNITS = ("{m}^3", "m^3", "{units}", "units", "{km}", "km")
_TEXT_WRAP = re.compile(r"\\(?:text|mbox|mathrm)\{([^{}]*)\}")
_UNIT_WORDS = re.compile(r"(?<![A-Za-z\\])(?:cm|mm|km|m|units?|degrees?|inches|feet)(?![A-Za-z])(?:\^?\d)?")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_NAMES = {"pi": math.pi, "e": math.e}


def clean_latex(text: str, *, strip_units: bool = False) -> str:
    r"""MATH-V's answer clean-up (``find_math_answer`` / ``_strip_string``), so ``"$\frac{1}{2}$"`` and
    ``"\dfrac{1}{2}"`` agree.

    Lowercased; only the part after the last "=" or "\approx" is kept; spaces, ``$``, ``\left``/``\right``,
    degree marks (``^\circ``), ``\%`` and the keywords ``\text``/``\mbox`` (not their braces) are removed, and
    of units only the ones the official script removes: "units", "km", "m^3". So "12 cm" stays "12cm", which is
    not the number 12, exactly as in the official evaluation.

    ``strip_units=True`` (a deviation, off by default) also drops ``\text{...}`` wrappers with their braces,
    unit words (cm, mm, m, inches, feet, degrees), "°" and a plain "%".
    """
    text = text.strip().rstrip(".").lower().replace("{}", "")
    if "}" in text and ("{" not in text or text.find("}") < text.find("{")):
        text = text.split("}")[0]  # a stray closing brace ends the answer (find_math_answer)
    text = re.split(r"=|\\approx", text)[-1]
    if strip_units:
        text = _UNIT_WORDS.sub("", _TEXT_WRAP.sub(r"\1", text)).replace("°", "").replace("%", "")
    text = text.replace(r"\text", "").replace(r"\mbox", "").replace("^{\\circ}", "").replace("^\\circ", "")
    for token in (*_DROP, *_OFFICIAL_UNITS):
        text = text.replace(token, "")
    text = text.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace("−", "-").replace("∞", r"\infty")
    text = "".join(text.split())
    return "0" + text if text.startswith(".") else text


def _braced(text: str, start: int) -> tuple[str, int]:
    """The ``{...}`` group (or single character) at ``start`` and the index just after it."""
    if start < len(text) and text[start] == "{":
        depth = 0
        for i in range(start, len(text)):
            depth += text[i] == "{"
            depth -= text[i] == "}"
            if depth == 0:
                return text[start + 1 : i], i + 1
        raise ValueError("unbalanced braces")
    if start >= len(text):
        raise ValueError("missing argument")
    return text[start], start + 1


def _to_python(text: str) -> str:
    r"""Rewrite the arithmetic subset of LaTeX as a Python expression (``\frac{a}{b}`` -> ``((a)/(b))``)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith(r"\frac", i):
            num, i = _braced(text, i + 5)
            den, i = _braced(text, i)
            out.append(f"(({_to_python(num)})/({_to_python(den)}))")
        elif text.startswith(r"\sqrt", i):
            arg, i = _braced(text, i + 5)
            out.append(f"(({_to_python(arg)})**0.5)")
        elif text.startswith(r"\pi", i):
            out.append("pi")
            i += 3
        elif text.startswith(r"\cdot", i) or text.startswith(r"\times", i):
            out.append("*")
            i += 5 if text.startswith(r"\cdot", i) else 6
        else:
            out.append({"{": "(", "}": ")", "^": "**"}.get(text[i], text[i]))
            i += 1
    expr = "".join(out)
    # Implicit products: "2pi", "2(3)", ")(" -> explicit "*".
    return re.sub(r"(?<=[\d)])\s*(?=pi\b|\()", "*", expr)


def _walk(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _walk(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _walk(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _walk(node.left), _walk(node.right)
        if abs(exponent) > 64:  # keeps a hostile "9**9**9" from hanging the scorer
            raise ValueError("exponent too large")
        return float(base**exponent)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_walk(node.left), _walk(node.right))
    raise ValueError(f"unsupported expression node {type(node).__name__}")


def evaluate(text: str, *, strip_units: bool = False) -> float | None:
    """The numeric value of a cleaned answer (see :func:`clean_latex`), or None when it is not arithmetic."""
    cleaned = clean_latex(text, strip_units=strip_units)
    cleaned = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", cleaned)  # thousands separators only
    if not cleaned:
        return None
    try:
        value = _walk(ast.parse(_to_python(cleaned), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def math_equal(
    prediction: str, gold: str, *, rel_tol: float = 1e-6, decimals: int | None = 2, strip_units: bool = False
) -> bool:
    """Whether two math answers agree: equal cleaned strings, or numbers equal after rounding.

    ``decimals`` mirrors MATH-V's ``is_equal``, which compares numbers rounded to 2 places (so "1.414" and
    ``\\sqrt{2}`` agree); pass None for a pure relative-tolerance comparison. ``strip_units`` is passed to
    :func:`clean_latex` (off by default, as in the official script).
    """
    a_text, b_text = clean_latex(prediction, strip_units=strip_units), clean_latex(gold, strip_units=strip_units)
    if a_text == b_text != "":
        return True
    a, b = evaluate(prediction, strip_units=strip_units), evaluate(gold, strip_units=strip_units)
    if a is None or b is None:
        return False
    if decimals is not None and round(a, decimals) == round(b, decimals):
        return True
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def extract_math_answer(text: str) -> str:
    r"""The final answer of a free-form math response, or "" when none can be read.

    The last ``\boxed{}`` or "answer is" phrase wins (MATH-V's ``find_math_answer``); otherwise a short
    one-line response is taken whole (so "1/2" stays a fraction), and a longer one gives its last number.
    """
    span = answer_span(text).strip()
    if span != text.strip() or ("\n" not in span and len(span) <= 24):
        return span.rstrip(".").strip()
    return extract_number(text)


# MATH-V evaluate.py cuts a response after these phrases (lowercase first, then capitalised).
_ANSWER_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
# A cleaned answer longer than this is a whole response that stated no answer: flagged as a parse failure.
MAX_ANSWER_CHARS = 32


def find_math_answer(text: str) -> str:
    r"""MATH-V's ``find_math_answer``: the content of the outermost ``\boxed{...}`` (from the first "oxed{" to
    the last "}") if there is one, else the whole text, then :func:`clean_latex`."""
    text = text.lower().replace("{}", "")
    boxed = re.findall(r"oxed\{(.*)\}", text, flags=re.S)
    return clean_latex(boxed[-1] if boxed else text)


def math_v_answer(response: str) -> str:
    r"""The model answer as MATH-V's ``evaluate.py`` reads it (lowercased and cleaned), "" for an empty one.

    A response ending in " B." / " (B)." or starting with "B\n" is the letter; a number after the last "is "
    is taken; without a ``\boxed{}`` the text after "the (final / correct) answer is" / "the answer should be"
    up to the line or sentence end; with several boxes the last one; then :func:`find_math_answer`, and
    "(a)" / "{a}" become "a".
    """
    answer = response.strip()
    for c in "ABCDE":
        if answer.endswith((f" {c}.", f" ({c}).")) or answer.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n")):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for flag in _ANSWER_FLAGS:
            for phrase in (flag, flag.replace("the", "The")):
                found = phrase in answer
                answer = answer.split(phrase)[-1].strip()
                if found:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for c in "abcde":
        answer = answer.replace(f"({c})", c).replace(f"{{{c}}}", c)
    return answer.rstrip(".").lstrip(":").strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
