"""Mutation primitives for the reader fuzz campaign, drawn through hypothesis.

Every function takes hypothesis's interactive ``data`` object (``st.data()``) and draws
its choices from it, so a campaign is reproducible from its seed and a failing input can
be replayed. Three kinds of mutation:

* bytes: flips, truncation, zeroed runs, duplicated and inserted chunks;
* text headers (NRRD, MetaImage): a ``key: value`` line deleted, duplicated, or given an
  absurd value;
* trees (DICOM datasets with nested sequences, JSON and YAML documents): one element
  deleted, emptied, given an absurd value or a wrong type/VR.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

ABSURD_NUMBERS = [
    0,
    -1,
    1,
    2**15,
    2**16,
    2**31,
    2**32,
    2**63,
    1e30,
    -1e30,
    1e-30,
    math.nan,
    math.inf,
    -math.inf,
]
ABSURD_TEXT = [
    "",
    " ",
    "nan",
    "NaN NaN NaN",
    "inf",
    "-inf",
    "1e30",
    "1e30 1e30 1e30",
    "-1",
    "0 0 0",
    "1 2",
    "1\\2\\3\\4\\5\\6\\7",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "LIST",
    "LOCAL",
    "\x00\x00",
    "é\u202e",
    "A" * 5000,
]


def absurd_number(data: Any) -> Any:
    return data.draw(
        st.one_of(
            st.sampled_from(ABSURD_NUMBERS),
            st.integers(min_value=-(2**40), max_value=2**40),
            st.floats(allow_nan=True, allow_infinity=True),
        )
    )


def absurd_text(data: Any) -> str:
    return data.draw(st.one_of(st.sampled_from(ABSURD_TEXT), st.text(max_size=30)))


def absurd_value(data: Any) -> Any:
    """A JSON/YAML-able value of a random, often wrong, type."""
    return data.draw(
        st.one_of(
            st.sampled_from([None, True, [], {}, [[]], {"": None}, list(range(50))]),
            st.sampled_from(ABSURD_NUMBERS[:-3]),
            st.sampled_from(ABSURD_TEXT),
            st.integers(),
            st.text(max_size=20),
        )
    )


def mutate_bytes(data: Any, blob: bytes) -> bytes:
    """One random byte-level change of ``blob``."""
    if not blob:
        return data.draw(st.binary(max_size=64))
    n = len(blob)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero", "duplicate", "insert", "overwrite"]))
    pos = data.draw(st.integers(0, n - 1))
    if kind == "flip":
        out = bytearray(blob)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, n - 1))
            out[i] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(out)
    if kind == "truncate":
        return blob[:pos]
    length = data.draw(st.integers(1, 64))
    if kind == "zero":
        return blob[:pos] + b"\x00" * length + blob[pos + length :]
    if kind == "duplicate":
        return blob[:pos] + blob[pos : pos + length] * 2 + blob[pos + length :]
    chunk = data.draw(st.binary(min_size=1, max_size=length))
    if kind == "insert":
        return blob[:pos] + chunk + blob[pos:]
    return blob[:pos] + chunk + blob[pos + len(chunk) :]


def mutate_header_lines(data: Any, text: str, separator: str) -> str:
    """NRRD (``key: value``) or MetaImage (``Key = value``) header: one line changed."""
    lines = text.split("\n")
    keyed = [i for i, line in enumerate(lines) if separator in line]
    if not keyed:
        return text
    i = data.draw(st.sampled_from(keyed))
    key = lines[i].split(separator, 1)[0]
    kind = data.draw(st.sampled_from(["value", "value", "value", "delete", "duplicate", "vector"]))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, f"{key}{separator}{absurd_text(data)}")
    elif kind == "vector":
        count = data.draw(st.integers(0, 6))
        lines[i] = f"{key}{separator}" + " ".join(str(absurd_number(data)) for _ in range(count))
    else:
        value = data.draw(st.one_of(st.just(None), st.just(0)))
        lines[i] = f"{key}{separator}" + (absurd_text(data) if value is None else str(absurd_number(data)))
    return "\n".join(lines)


def _tree_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(_tree_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out.extend(_tree_paths(v, (*prefix, i)))
    return out


def mutate_tree(data: Any, tree: Any) -> Any:
    """A JSON/YAML document with one element deleted, replaced or duplicated (in place)."""
    paths = _tree_paths(tree)
    if not paths:
        return absurd_value(data)
    path = data.draw(st.sampled_from(paths))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    kind = data.draw(st.sampled_from(["replace", "replace", "delete", "add_key"]))
    if kind == "delete":
        del parent[key]
    elif kind == "add_key" and isinstance(parent, dict):
        parent[absurd_text(data) or "unknown_key"] = absurd_value(data)
    else:
        parent[key] = absurd_value(data)
    return tree


def mutate_dicom(data: Any, ds: Any) -> None:
    """One element anywhere in a pydicom dataset (nested sequences included) changed in place:
    deleted, emptied, an absurd value of its VR or another VR, or a sequence item dropped or doubled."""
    from pydicom.dataelem import DataElement

    elements: list[tuple[Any, Any]] = []

    def walk(dataset: Any) -> None:
        for elem in dataset:
            elements.append((dataset, elem.tag))
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)

    walk(ds)
    if not elements:
        return
    parent, tag = data.draw(st.sampled_from(elements))
    elem = parent[tag]
    kind = data.draw(st.sampled_from(["delete", "empty", "value", "value", "value", "vr", "sequence"]))
    if kind == "delete":
        del parent[tag]
    elif kind == "empty":
        parent[tag] = DataElement(tag, elem.VR, [] if elem.VR == "SQ" else None)
    elif kind == "sequence" and elem.VR == "SQ" and len(elem.value):
        items = list(elem.value)
        i = data.draw(st.integers(0, len(items) - 1))
        elem.value = items[:i] + items[i + 1 :] if data.draw(st.booleans()) else [*items, items[i]]
    elif kind == "vr":
        vr = data.draw(st.sampled_from(["UN", "OB", "LO", "US", "DS", "SQ", "UI"]))
        raw = absurd_text(data).encode("latin-1", "replace")
        parent[tag] = DataElement(tag, vr, [] if vr == "SQ" else raw if vr in ("UN", "OB") else None)
    else:
        parent[tag] = DataElement(tag, elem.VR, _dicom_value(data, elem))


def _dicom_value(data: Any, elem: Any) -> Any:
    vr = elem.VR
    if vr in ("OB", "OW", "OF", "OD", "OL", "UN"):
        raw = bytes(elem.value or b"")
        return mutate_bytes(data, raw)
    if vr == "SQ":
        return []
    if vr in ("DS", "FL", "FD"):
        n = data.draw(st.integers(1, 7))
        values = [absurd_number(data) for _ in range(n)]
        if vr == "DS":
            return [_ds_text(v) for v in values] if n > 1 else _ds_text(values[0])
        return values if n > 1 else values[0]
    if vr in ("IS", "US", "UL", "SS", "SL", "UV", "SV"):
        value = data.draw(
            st.one_of(
                st.sampled_from([0, -1, 1, 2**15, 65535, 2**31 - 1, 2**32]), st.integers(-(2**33), 2**33)
            )
        )
        if vr == "IS":
            return str(value)
        limits = {"US": (0, 65535), "SS": (-32768, 32767), "UL": (0, 2**32 - 1), "SL": (-(2**31), 2**31 - 1)}
        lo, hi = limits.get(vr, (-(2**63), 2**64 - 1))
        return min(max(value, lo), hi)
    return absurd_text(data)


def _ds_text(value: float) -> str:
    text = repr(float(value)) if not isinstance(value, int) else str(value)
    return text[:16]
