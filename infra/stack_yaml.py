"""The YAML reader of stack files: strict where PyYAML's defaults would silently guess.

- a key written twice in one mapping is an error naming both lines (PyYAML keeps the last);
- anchors and aliases are allowed, but a document that refers to itself, or expands to more
  nodes than any stack needs ("billion laughs"), is refused before anything is built from it;
- numbers in exponent form without a dot (`1e3`) are numbers, as the YAML 1.2 reader of the
  Pulumi CLI reads them, so that a name like `1e3` gets the same "write it in quotes" hint
  under both.

`StackYaml` keeps the composed node tree so that an error found later, in a parsed value,
can be traced back to the text and line it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

# A large generated stack (800 tenants) has about 20,000 nodes; an alias bomb has billions.
MAX_NODES = 200_000
MERGE_TAG = "tag:yaml.org,2002:merge"
_SCALAR_KINDS = {
    "tag:yaml.org,2002:bool": "the boolean",
    "tag:yaml.org,2002:int": "the number",
    "tag:yaml.org,2002:float": "the number",
    "tag:yaml.org,2002:null": "null (no value)",
    "tag:yaml.org,2002:timestamp": "a date",
}


class StackYamlError(Exception):
    """A problem of the file's YAML itself; the message starts with the line when one is known."""


class _Loader(yaml.SafeLoader):
    _composed = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        # Counted as they are read, so a file of countless aliases stops early, not after all of them.
        self._composed += 1
        if self._composed > MAX_NODES:
            raise StackYamlError(
                f"line {self.peek_event().start_mark.line + 1}: more than {MAX_NODES:,} values; "
                "a stack file needs far fewer"
            )
        return super().compose_node(parent, index)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise StackYamlError(
                    f"line {_line(key_node)}: a mapping key must be a plain name, not a list or mapping"
                )
            key = self.construct_object(key_node)
            if key in seen:
                raise StackYamlError(
                    f"line {_line(key_node)}: duplicate key {key_node.value!r} (first at line {seen[key]}); "
                    "YAML would silently keep only the last one: merge them or remove one"
                )
            seen[key] = _line(key_node)
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node | None) -> None:
    """Count nodes as if every alias were copied out, without copying; refuse cycles.

    Iterative, with each shared node counted once and its size reused, so the check itself
    stays linear in the size of the text however deep or wide the aliases nest.
    """
    if root is None:
        return
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise StackYamlError(
                    f"line {_line(node)}: aliases expand this document to more than {MAX_NODES:,} values; "
                    "a stack file needs far fewer: write the values out or use fewer nested aliases"
                )
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise StackYamlError(
                    f"line {_line(child)}: an alias refers to the mapping or list that contains it, "
                    "which would never end; remove the alias"
                )
            if id(child) not in sizes:
                stack.append((child, False))


@dataclass
class StackYaml:
    data: Any
    root: yaml.Node | None

    def node_at(self, path: list[Any]) -> yaml.Node | None:
        """The node a key path (`["config", "gpu-platform:tenants", 0, "name"]`) leads to, if any.

        pydantic marks a mapping's key (rather than its value) with a following "[key]".
        """
        node = self.root
        for index, part in enumerate(path):
            if part == "[key]":
                continue
            wants_key = path[index + 1 : index + 2] == ["[key]"]
            if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
            elif isinstance(node, yaml.MappingNode):
                node = _entry(node, part, wants_key)
            else:
                return None
        return node


def _entry(node: yaml.MappingNode, part: Any, wants_key: bool) -> yaml.Node | None:
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        try:
            key = _Loader("").construct_object(key_node)
        except yaml.YAMLError:
            key = key_node.value
        if key == part or key_node.value == str(part):
            return key_node if wants_key else value_node
    return None


def read(text: str) -> StackYaml:
    """Parse one YAML document; raises StackYamlError with the line of the problem."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except StackYamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise StackYamlError(f"{where}not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise StackYamlError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise StackYamlError("not valid YAML here: lists or mappings nest too deeply") from None
    finally:
        loader.dispose()
    return StackYaml(data, root)


def scalar_hint(node: yaml.Node | None, value: Any) -> str | None:
    """For a name YAML read as something else (`no` -> false, `0x10` -> 16), what to write instead."""
    if isinstance(value, str) or isinstance(value, (list, dict)):
        return None
    if isinstance(node, yaml.ScalarNode) and node.style is None:
        kind = _SCALAR_KINDS.get(node.tag)
        if kind:
            shown = "" if node.tag == "tag:yaml.org,2002:null" else f" {_python_text(value)}"
            return (
                f"YAML reads the unquoted {node.value!r} as {kind}{shown}, not as text; "
                f'if it is a name, write it in quotes: "{node.value}"'
            )
    if isinstance(value, (bool, int, float)):
        return f"YAML read this as {_python_text(value)}, not as text; if it is a name, write it in quotes"
    return None


def _python_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
