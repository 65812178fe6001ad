"""Evaluate an Argo Rollouts success/failure condition against a Prometheus answer.

Argo's Prometheus provider hands a vector result to the condition as ``result``,
a list of floats, and evaluates the condition with the ``expr`` language.  This
evaluator covers the part of that language the generated templates use
(``len(result)``, ``result[i]``, numbers, comparisons, ``&&``, ``||``, parentheses)
and raises on anything else, so a template that starts using more fails here
instead of being misread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r"\s*(len\(result\)|result\[\d+\]|\d+(?:\.\d+)?(?:e[-+]?\d+)?|&&|\|\||"
                    r"[<>]=?|==|!=|\(|\))")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unsupported condition syntax at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def evaluate(condition: str, result: list[float]) -> bool:
    """The condition's truth for ``result`` (the vector's values, in order).  ``&&`` and
    ``||`` short-circuit, as in Argo: ``len(result) > 0 && result[0] < 1`` is false, not an
    error, on an empty result."""
    tokens = _tokens(condition)
    pos = 0
    Node = Callable[[], Any]

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"incomplete condition {condition!r}")
        pos += 1
        return tokens[pos - 1]

    def term() -> Node:
        tok = take()
        if tok == "(":
            inner = disjunction()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {condition!r}")
            return inner
        if tok == "len(result)":
            return lambda: len(result)
        if tok.startswith("result["):
            index = int(tok[7:-1])
            return lambda: result[index]  # IndexError, like Argo's "index out of range"
        number = float(tok)
        return lambda: number

    def comparison() -> Node:
        left = term()
        if peek() in _OPS:
            op = _OPS[take()]
            right = term()
            return lambda: op(left(), right())
        return left

    def conjunction() -> Node:
        node = comparison()
        while peek() == "&&":
            take()
            node = (lambda a, b: lambda: bool(a()) and bool(b()))(node, comparison())
        return node

    def disjunction() -> Node:
        node = conjunction()
        while peek() == "||":
            take()
            node = (lambda a, b: lambda: bool(a()) or bool(b()))(node, conjunction())
        return node

    tree = disjunction()
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in {condition!r}")
    return bool(tree())


def outcome(metric: dict[str, Any], result: list[float]) -> str:
    """Argo's phase of one measurement: Failed, Successful or Inconclusive."""
    if evaluate(metric["failureCondition"], result):
        return "Failed"
    if evaluate(metric["successCondition"], result):
        return "Successful"
    return "Inconclusive"
