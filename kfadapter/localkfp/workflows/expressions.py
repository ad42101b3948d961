"""Argo's `{{...}}` substitution and its `when` and `depends` expressions.

- `substitute`: Argo replaces `{{key}}` tags (spaces inside the braces ignored) with the
  values in scope (`workflow/common/util.go` `substituteParams`, on fasttemplate); a tag
  whose key is not in scope stays as it is.
- `evaluate_when`: a task's or step's `when`, after substitution, is a govaluate
  expression; identifiers that are not `true`/`false` count as strings, so `foo != bar`
  needs no quotes (`workflow/controller/steps.go` `shouldExecute`).
- `evaluate_depends`: a DAG task's `depends` (`workflow/common/ancestry.go`): `A` means
  `A.Succeeded || A.Skipped || A.Daemoned`, `A.Failed`, `A.Errored`, `A.Omitted`,
  `A.AnySucceeded`, `A.AllFailed`..., with `&&`, `||`, `!` and parentheses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<operator>==|!=|>=|<=|=~|!~|&&|\|\||[><!()])
      | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)


class ExpressionError(ValueError):
    """An expression Argo would refuse; the message says why."""


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each `{{key}}` whose key is in `values`; leave the others."""
    if "{{" not in text:
        return text
    return _TAG.sub(lambda tag: values.get(tag[1], tag[0]), text)


def substitute_all(value: Any, values: Mapping[str, str]) -> Any:
    """`substitute` in every string of a JSON-like value (dict keys stay)."""
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, list):
        return [substitute_all(item, values) for item in value]
    if isinstance(value, dict):
        return {key: substitute_all(item, values) for key, item in value.items()}
    return value


def tags(text: str) -> list[str]:
    """The keys of the `{{...}}` tags in a text."""
    return [tag[1] for tag in _TAG.finditer(text)]


def evaluate_when(expression: str) -> bool:
    """A substituted `when`; ExpressionError when it is not a boolean expression."""
    result = _Parser(expression, _as_string).parse()
    if not isinstance(result, bool):
        raise ExpressionError(f"Expected boolean evaluation for '{expression}'. Got {result}")
    return result


def evaluate_depends(expression: str, phases: Mapping[str, str]) -> bool:
    """A `depends` expression over the phases of the tasks it names (Argo node phases)."""

    def resolve(name: str) -> bool:
        task, _, result = name.partition(".")
        if task not in phases:
            raise ExpressionError(f"depends names an unknown task {task!r}")
        return _task_result(phases[task], result or "")

    result = _Parser(expression, resolve).parse()
    if not isinstance(result, bool):
        raise ExpressionError(f"depends '{expression}' is not a boolean expression")
    return result


def depends_tasks(expression: str) -> list[str]:
    """The task names a `depends` expression refers to, in order, once each."""
    names: list[str] = []
    for match in _TOKEN.finditer(expression):
        if match["name"] and match["name"] not in ("true", "false"):
            task = match["name"].partition(".")[0]
            if task not in names:
                names.append(task)
    return names


def _task_result(phase: str, result: str) -> bool:
    """Whether a task in this phase has that result (Argo's `TaskResult`s)."""
    checks: dict[str, Callable[[str], bool]] = {
        "": lambda p: p in ("Succeeded", "Skipped"),
        "Succeeded": lambda p: p == "Succeeded",
        "Failed": lambda p: p == "Failed",
        "Errored": lambda p: p == "Error",
        "Skipped": lambda p: p == "Skipped",
        "Omitted": lambda p: p == "Omitted",
        "Daemoned": lambda p: False,
        "AnySucceeded": lambda p: p == "Succeeded",
        "AllFailed": lambda p: p == "Failed",
    }
    if result not in checks:
        raise ExpressionError(f"depends uses an unknown task result {result!r}")
    return checks[result](phase)


def _as_string(name: str) -> Any:
    """govaluate variables as Argo reads them in `when`: strings."""
    return name


class _Parser:
    """A recursive-descent evaluator of govaluate's boolean and comparison subset."""

    def __init__(self, text: str, resolve: Callable[[str], Any]) -> None:
        self._text = text
        self._resolve = resolve
        self._tokens = self._tokenize(text)
        self._position = 0

    def parse(self) -> Any:
        if not self._tokens:
            raise ExpressionError(f"empty expression '{self._text}'")
        value = self._or()
        if self._position != len(self._tokens):
            raise ExpressionError(
                f"unexpected {self._tokens[self._position][1]!r} in '{self._text}'"
            )
        return value

    def _tokenize(self, text: str) -> list[tuple[str, Any]]:
        tokens: list[tuple[str, Any]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise ExpressionError(
                    f"Invalid 'when' expression '{text}': Invalid token at {text[position:]!r}"
                    ' (hint: try wrapping the affected expression in quotes ("))'
                )
            position = match.end()
            if match["number"]:
                tokens.append(("value", float(match["number"])))
            elif match["string"]:
                tokens.append(("value", json.loads(_double_quoted(match["string"]))))
            elif match["operator"]:
                tokens.append(("op", match["operator"]))
            elif match["name"] in ("true", "false"):
                tokens.append(("value", match["name"] == "true"))
            else:
                tokens.append(("value", self._resolve(match["name"])))
        return tokens

    def _peek(self) -> str | None:
        if self._position < len(self._tokens) and self._tokens[self._position][0] == "op":
            return self._tokens[self._position][1]
        return None

    def _take(self) -> tuple[str, Any]:
        if self._position >= len(self._tokens):
            raise ExpressionError(f"unexpected end of '{self._text}'")
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = _boolean(value, self._text) or _boolean(right, self._text)
        return value

    def _and(self) -> Any:
        value = self._comparison()
        while self._peek() == "&&":
            self._take()
            right = self._comparison()
            value = _boolean(value, self._text) and _boolean(right, self._text)
        return value

    def _comparison(self) -> Any:
        left = self._unary()
        operator = self._peek()
        if operator in ("==", "!=", ">", "<", ">=", "<=", "=~", "!~"):
            self._take()
            return _compare(operator, left, self._unary(), self._text)
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not _boolean(self._unary(), self._text)
        if self._peek() == "(":
            self._take()
            value = self._or()
            if self._take() != ("op", ")"):
                raise ExpressionError(f"unbalanced parentheses in '{self._text}'")
            return value
        kind, value = self._take()
        if kind != "value":
            raise ExpressionError(f"unexpected {value!r} in '{self._text}'")
        return value


def _double_quoted(literal: str) -> str:
    """A quoted literal as JSON text (single-quoted ones converted)."""
    if literal.startswith('"'):
        return literal
    inner = literal[1:-1].replace("\\'", "'").replace('"', '\\"')
    return f'"{inner}"'


def _boolean(value: Any, text: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"'{text}': {value!r} is not a boolean")
    return value


def _compare(operator: str, left: Any, right: Any, text: str) -> bool:
    """govaluate's comparisons: == and != on any values, order on two numbers or two strings,
    =~ and !~ a string against a regular expression."""
    if operator == "==":
        return left == right and type(left) is type(right)
    if operator == "!=":
        return not (left == right and type(left) is type(right))
    if operator in ("=~", "!~"):
        if not (isinstance(left, str) and isinstance(right, str)):
            raise ExpressionError(f"'{text}': {operator} needs strings")
        found = re.search(right, left) is not None
        return found if operator == "=~" else not found
    numbers = all(isinstance(v, float) for v in (left, right))
    strings = all(isinstance(v, str) for v in (left, right))
    if not (numbers or strings):
        raise ExpressionError(f"'{text}': cannot compare {left!r} {operator} {right!r}")
    return {
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[operator]
