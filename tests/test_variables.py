"""The settings table (``otel_user_tracking/variables.py``) names exactly the variables the package reads."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.policy import USER_FIELDS
from otel_user_tracking.variables import GROUPS, PREFIX, VARIABLES

PACKAGE = Path(__file__).resolve().parents[1] / "otel_user_tracking"
FULL_NAME = re.compile(rf"{PREFIX}[A-Z0-9_]+")
SUFFIX = re.compile(r"[A-Z][A-Z0-9_]*")
SUFFIX_READERS = {"_env_bool", "_env_choice"}


def _is_prefix(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "ENV_PREFIX"


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _names_in(tree: ast.AST) -> set[str]:
    """Every variable name a module spells: whole, as ``PREFIX + "X"``, ``f"{PREFIX}X"``, or a
    suffix handed to env.py's readers (directly or as a ``("X", "x")`` option pair)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        text = _text(node)
        if text is not None and FULL_NAME.fullmatch(text):
            found.add(text)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _is_prefix(node.left):
            suffix = _text(node.right)
            if suffix is not None and SUFFIX.fullmatch(suffix):
                found.add(PREFIX + suffix)
        elif isinstance(node, ast.JoinedStr):
            for value, following in zip(node.values, node.values[1:]):
                head = SUFFIX.match(_text(following) or "")
                if isinstance(value, ast.FormattedValue) and _is_prefix(value.value) and head:
                    found.add(PREFIX + head.group())
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in SUFFIX_READERS:
            suffix = _text(node.args[1]) if len(node.args) > 1 else None
            if suffix is not None and SUFFIX.fullmatch(suffix):
                found.add(PREFIX + suffix)
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
            suffix, option = (_text(element) for element in node.elts)
            if suffix and option and SUFFIX.fullmatch(suffix) and option == suffix.lower():
                found.add(PREFIX + suffix)
    return found


def _read_by_the_package() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name != "variables.py":
            names |= _names_in(ast.parse(path.read_text(encoding="utf-8")))
    # Named from a list at run time: a policy field each, a delivery option each.
    names |= {PREFIX + field.upper() for field in USER_FIELDS}
    names |= {PREFIX + item.name.upper() for item in fields(DeliverySettings)}
    return names


TABLE = {variable.name for variable in VARIABLES}


def test_every_variable_the_package_reads_has_an_entry() -> None:
    """A variable read anywhere in the package is in ``VARIABLES`` (add its entry there)."""
    assert sorted(_read_by_the_package() - TABLE) == []


def test_every_entry_names_a_variable_the_package_reads() -> None:
    """No entry of ``VARIABLES`` names a variable nothing reads (remove it with its code)."""
    assert sorted(TABLE - _read_by_the_package()) == []


def test_entries_are_unique_complete_and_grouped() -> None:
    """One entry per name, each with a type, a default, a meaning and a known group."""
    assert len(TABLE) == len(VARIABLES)
    for variable in VARIABLES:
        assert variable.type and variable.default and variable.meaning, variable.name
        assert variable.group in GROUPS, variable.name


def test_the_scan_finds_each_way_the_package_spells_a_name() -> None:
    """The scanner sees whole names, prefix sums, f-strings, reader suffixes and option pairs."""
    source = (
        'A = "OTEL_PYTHON_USER_TRACKING_ONE"\nB = ENV_PREFIX + "TWO"\nC = f"{ENV_PREFIX}THREE={x}"\n'
        '_env_bool(env, "FOUR")\nfor name, attr in (("FIVE", "five"),): pass\n'
    )
    assert _names_in(ast.parse(source)) == {PREFIX + n for n in ("ONE", "TWO", "THREE", "FOUR", "FIVE")}
