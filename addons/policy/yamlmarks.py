"""YAML with line numbers, so every config error can name its line.

A `yaml.SafeLoader` whose mappings and sequences remember where each key and item
was written. Safe loading is kept: only the container classes change.
"""

from __future__ import annotations

from typing import Any

import yaml


class MarkedDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _MarkedLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _MarkedLoader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)
    out = MarkedDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out.key_lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    out = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_marked(text: str) -> Any:
    """Parse one YAML document; raises `yaml.YAMLError` (with a problem_mark) on bad YAML."""
    return yaml.load(text, Loader=_MarkedLoader)  # noqa: S506 - SafeLoader subclass
