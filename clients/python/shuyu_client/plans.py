"""DataFrames as Substrait plans, the form dataframe jobs travel in.

A DataFrame built in a :meth:`shuyu_client.Client.session` (empty tables carrying only the
catalog schema) is serialized with datafusion-python's Substrait producer::

    datafusion.substrait.Producer.to_substrait_plan(df.logical_plan(), ctx).encode()

which is the same ``datafusion_substrait::logical_plan::producer::to_substrait_plan`` the
server's engine (datafusion-substrait 55.2) consumes with.

**Deterministic bytes.** DataFusion's producer collects the plan's function declarations
in a hash map, so the *order* of ``Plan.extensions`` changes from one serialization to the
next (anchors and everything else are stable). The server hashes the bytes as submitted
(``Job.query_sha256``), so :func:`canonicalize` sorts those declarations by kind and anchor:
a pure permutation of top-level records, which consumers look up by anchor. The same
DataFrame then always yields the same bytes and the same query hash.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import datafusion

# Field numbers in substrait.Plan (substrait 0.63 / spec 0.7x, the crate the server uses).
_PLAN_EXTENSIONS = 2  # repeated SimpleExtensionDeclaration
_PLAN_EXTENSION_URNS = 8  # repeated SimpleExtensionURN
# SimpleExtensionDeclaration's oneof: 1 = extension_type, 2 = type variation, 3 = function.
# The producer emits functions, then types, then type variations; keep that grouping.
_KIND_ORDER = {3: 0, 1: 1, 2: 2}


class _WireError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint too long")


def _records(buf: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """Top-level protobuf records: (field, wire type, whole record bytes, payload)."""
    out = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            payload = b""
        elif wire == 1:
            pos += 8
            payload = b""
        elif wire == 2:
            length, pos = _varint(buf, pos)
            payload = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
            payload = b""
        else:  # groups (3, 4) never occur in Substrait
            raise _WireError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _WireError("truncated record")
        out.append((field, wire, buf[start:pos], payload))
    return out


def _first_varint(payload: bytes, field: int) -> int:
    for f, wire, record, _ in _records(payload):
        if f == field and wire == 0:
            key_len = _varint(record, 0)[1]
            return _varint(record, key_len)[0]
    return 0  # proto3 default


def _extension_key(payload: bytes) -> tuple[int, int, bytes]:
    inner = _records(payload)
    if len(inner) == 1 and inner[0][1] == 2:
        kind = inner[0][0]
        # ExtensionType.type_anchor, ExtensionTypeVariation.type_variation_anchor and
        # ExtensionFunction.function_anchor are all field 2.
        return (_KIND_ORDER.get(kind, 9), _first_varint(inner[0][3], 2), payload)
    return (9, 0, payload)


def canonicalize(plan: bytes) -> bytes:
    """Sorts a Substrait plan's extension declarations (and URNs) by kind and anchor.

    Returns the input unchanged if it is not a well-formed protobuf message.
    """
    try:
        records = _records(plan)
        for field, key in (
            (_PLAN_EXTENSIONS, lambda r: _extension_key(r[3])),
            (_PLAN_EXTENSION_URNS, lambda r: (_first_varint(r[3], 1), r[3])),
        ):
            slots = [i for i, r in enumerate(records) if r[0] == field and r[1] == 2]
            ordered = sorted((records[i] for i in slots), key=key)
            for i, r in zip(slots, ordered):
                records[i] = r
    except _WireError:
        return plan
    out = b"".join(r[2] for r in records)
    return out if len(out) == len(plan) else plan


def to_substrait(
    df: datafusion.DataFrame | datafusion.LogicalPlan,
    ctx: datafusion.SessionContext | None = None,
    *,
    canonical: bool = True,
) -> bytes:
    """Serializes a DataFrame's (unoptimized) logical plan as Substrait protobuf bytes.

    Args:
        df: the DataFrame (or a ``LogicalPlan``) to serialize.
        ctx: the session it was built in (any session works for built-in functions).
        canonical: sort the extension declarations so that equal plans give equal bytes.
    """
    import datafusion
    from datafusion.substrait import Producer

    plan = df.logical_plan() if isinstance(df, datafusion.DataFrame) else df
    if ctx is None:
        ctx = datafusion.SessionContext()
    data = Producer.to_substrait_plan(plan, ctx).encode()
    return canonicalize(data) if canonical else data


def plan_json(plan: bytes) -> dict[str, Any]:
    """A Substrait plan (bytes) as its protobuf-JSON form, decoded by DataFusion."""
    from datafusion.substrait import Serde

    return json.loads(Serde.deserialize_bytes(plan).to_json())


def named_tables(plan: bytes) -> list[list[str]]:
    """The ``names`` of every ``NamedTable`` read in a Substrait plan, in plan order."""
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "namedTable" and isinstance(value, dict):
                    found.append(list(value.get("names", [])))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(plan_json(plan))
    return found


def check_bare_names(plan: bytes) -> None:
    """Raises ``ValueError`` unless every table the plan reads is a bare (one-part) name."""
    qualified = [".".join(n) for n in named_tables(plan) if len(n) != 1]
    if qualified:
        raise ValueError(
            "the plan reads qualified table name(s) "
            + ", ".join(sorted(set(qualified)))
            + "; the server resolves only bare dataset names (use ctx.table('residents'))"
        )
