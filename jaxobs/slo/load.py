"""Read an SLO spec's YAML with bounds, so a hostile or broken file costs milliseconds, not gigabytes.

PyYAML's ``safe_load`` is safe from code execution but not from size:

* **aliases** — a 391-byte "billion laughs" document expands to gigabytes;
  a spec never needs ``&anchor``/``*alias``, so they are rejected;
* **nesting** — 5,000 levels end in a ``RecursionError`` traceback;
* **node count** and **file size** — capped well above any real spec;
* **numbers** — ``.nan``/``.inf`` compare false with every bound (an
  objective of NaN would pass range checks), and a 5,000-digit integer
  trips Python's int-parsing limit with a traceback.

Every violation is one :class:`~jaxobs.slo.spec.SpecError` line naming the
file, the line and the fix.  Both the composed node tree (for line numbers)
and the data come from a single parse.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any

import yaml

#: A real spec is a few KiB; examples/slo.yaml is under 4 KiB.
MAX_SPEC_BYTES = 1024 * 1024
#: Scalars, sequences and mappings together.
MAX_NODES = 10_000
MAX_DEPTH = 32
#: Digits in an integer scalar (2**63 has 19).
MAX_INT_DIGITS = 20


def _fail(source: str, problem: str, fix: str, line: int | None = None) -> Any:
    from jaxobs.slo.fields import SpecError

    raise SpecError(source, "(document)", problem, fix, line=line)


def read_spec_text(path: str | os.PathLike[str]) -> str:
    """The file's text: a regular file of at most :data:`MAX_SPEC_BYTES`, opened without blocking."""
    source = str(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _fail(source, "not a regular file", "pass the path of a YAML file")
        if st.st_size > MAX_SPEC_BYTES:
            _fail(source, f"the file is {st.st_size:,} bytes, over the {MAX_SPEC_BYTES:,}-byte limit",
                  "an SLO spec is a few KiB; check that this is the right file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        _fail(source, f"the file is over the {MAX_SPEC_BYTES:,}-byte limit",
              "an SLO spec is a few KiB; check that this is the right file")
    return data.decode("utf-8")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and counts nodes and depth while composing."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._source = source
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent):
            _fail(self._source, f"YAML alias *{event.anchor} is not allowed",
                  "write the value out instead of reusing an anchor (&name / *name)", line)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            _fail(self._source, f"more than {MAX_NODES:,} YAML nodes", "a spec is much smaller; split it", line)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            _fail(self._source, f"nested deeper than {MAX_DEPTH} levels",
                  "a spec is at most a few levels deep; check the indentation", line)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            _fail(self._source, f"an integer with {digits} digits", "use a number of sensible size",
                  node.start_mark.line + 1)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Any:
        value = super().construct_yaml_float(node)
        if math.isnan(value) or math.isinf(value):
            _fail(self._source, f"{node.value!r} is not a finite number",
                  "write a finite number (NaN and infinity are never valid in a spec)",
                  node.start_mark.line + 1)
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def safe_compose_load(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The node tree and the data of one YAML document, within the limits above.

    Raises ``yaml.YAMLError`` for syntax errors (the caller words them) and
    ``SpecError`` for everything this module bounds.
    """
    if len(text) > MAX_SPEC_BYTES:
        _fail(source, f"the text is over the {MAX_SPEC_BYTES:,}-byte limit",
              "an SLO spec is a few KiB; check that this is the right file")
    loader = _BoundedLoader(text, source)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_SPEC_BYTES", "read_spec_text", "safe_compose_load"]
