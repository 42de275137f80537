"""Reading a params file: its bytes (a UTF-8 file of at most :data:`MAX_FILE_BYTES`), its YAML (PyYAML's safe loader,
a repeated key an error) and the params file it ``extends``.

:func:`read_params_file` returns the file's mapping with its base filled in; :mod:`workbench.run.params` then checks
every key against the notebooks and :mod:`workbench.run.params_rules` every value against its rule.
"""
from __future__ import annotations

import reprlib
from pathlib import Path

import yaml

from ..errors import ParamsError

__all__ = ["read_params_file", "shown", "MAX_FILE_BYTES", "EXTENDS", "MAX_EXTENDS"]

MAX_FILE_BYTES = 1_000_000  # a params file holds settings; PyYAML needs seconds per MB, so larger files are refused
EXTENDS = "extends"  # the key naming a params file whose settings this one starts from
MAX_EXTENDS = 4  # params files in one extends chain
_repr = reprlib.Repr()  # bounded repr for error messages (Repr() takes no options before Python 3.12)
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxdict = 5
_repr.maxlevel = 3
#: a value as an error message shows it: strings, lists and nesting cut short
shown = _repr.repr


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, second: int):
        super().__init__(f"key {shown(key)} appears twice (lines {first} and {second})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only, no tags that run code), except that a key repeated in one mapping
    is an error: PyYAML would silently keep the last value, dropping e.g. a whole section."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges are overridden by design
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first != key_node.start_mark.line + 1:
                    raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def read_params_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The file's mapping with what it ``extends`` filled in: ``extends: default.yaml`` (a path relative to the
    file's folder) takes every key and section of that params file, then this file's own keys override them --
    a section key by key. The base's ``name`` is not inherited. Chains of at most :data:`MAX_EXTENDS` files, no
    cycles."""
    raw = _parse_yaml(path, _read_text(path))
    base = raw.pop(EXTENDS, None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ParamsError(f"{EXTENDS!r} in {path} must name another params file (e.g. extends: default.yaml), got "
                          f"{shown(base)}")
    base_path = (path.parent / base).resolve()
    if base_path in {p.resolve() for p in (*chain, path)}:
        raise ParamsError(f"{path} extends {base}, which (through {' -> '.join(p.name for p in (*chain, path))}) "
                          "extends it back: remove the cycle")
    if len(chain) + 1 >= MAX_EXTENDS:
        raise ParamsError(f"{path} extends a chain of more than {MAX_EXTENDS} params files; extend the base directly")
    if not base_path.is_file():
        raise ParamsError(f"{path} extends {base}, which is not a file next to it ({base_path}); name an existing "
                          "params file relative to this one's folder")
    merged = {k: v for k, v in read_params_file(base_path, (*chain, path)).items() if k != "name"}
    for key, value in raw.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _read_text(path: Path) -> str:
    """The params file's text: an existing file of at most MAX_FILE_BYTES bytes of UTF-8, else a ParamsError."""
    if not path.exists():
        raise ParamsError(f"params file {path} does not exist; the ones shipped are in params/ "
                          "(default.yaml, smoke.yaml, gpu.yaml, cifar10gs.yaml)")
    if not path.is_file():
        raise ParamsError(f"params file {path} is not a file (a directory?); pass a .yaml file such as "
                          "params/default.yaml")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ParamsError(f"params file {path} is {size:,} bytes; params files hold settings and are limited to "
                              f"{MAX_FILE_BYTES:,} bytes (is it the right file?)")
        with open(path, "rb") as fh:
            text = fh.read(MAX_FILE_BYTES + 1).decode("utf-8")
        if len(text.encode()) > MAX_FILE_BYTES:  # grew since stat
            raise ParamsError(f"params file {path} is larger than {MAX_FILE_BYTES:,} bytes")
    except UnicodeDecodeError as err:
        raise ParamsError(f"params file {path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                          "is it a binary file?") from None
    except OSError as err:
        raise ParamsError(f"params file {path} cannot be read: {err.strerror or err}") from None
    return text


def _parse_yaml(path: Path, text: str) -> dict:
    """The mapping the YAML ``text`` holds (empty for an empty file); duplicate keys are an error."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as err:
        raise ParamsError(f"params file {path}: {err}; PyYAML would keep only the last one. Remove one of them "
                          "(merge two sections into one)") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from None
    except RecursionError:
        raise ParamsError(f"params file {path} is nested too deeply to be a params file") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must be a mapping of parameter names to values, "
                          f"not a {type(raw).__name__}")
    return raw

