"""Catalog schemas as Arrow schemas, masked tables as Arrow tables, schema-only sessions.

Nothing here talks to the server: these helpers turn catalog messages into local objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ._proto.shuyu.v1 import shuyu_pb2 as pb

if TYPE_CHECKING:  # pragma: no cover
    import datafusion

#: Catalog ``Column.data_type`` → Arrow type. These are the types the server stores datasets
#: as (``ColumnType::arrow_type`` in shuyu-engine); every column is nullable.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "date": pa.date32(),
    "bool": pa.bool_(),
}

# Spellings the server's parser also accepts (shuyu-engine `ColumnType::from_str`).
_ALIASES = {
    "utf8": "string",
    "text": "string",
    "bigint": "int64",
    "int": "int64",
    "integer": "int64",
    "double": "float64",
    "float": "float64",
    "boolean": "bool",
}


def arrow_type(data_type: str) -> pa.DataType:
    """The Arrow type of a catalog column type (``"string"``, ``"int64"``, ``"float64"``,
    ``"date"``, ``"bool"``; case and surrounding spaces are ignored).

    Raises:
        ValueError: for a type the client does not know (rather than guessing one; a plan
            built on a wrong type would be refused by the server anyway).
    """
    key = data_type.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return ARROW_TYPES[key]
    except KeyError:
        raise ValueError(
            f"unknown catalog column type {data_type!r}: expected one of " + ", ".join(ARROW_TYPES)
        ) from None


def column_field(column: pb.Column) -> pa.Field:
    """A nullable Arrow field for a catalog column, with its classification and masking
    as field metadata (``b"shuyu.classification"``, ``b"shuyu.masking"``)."""
    metadata = {}
    if column.classification:
        metadata[b"shuyu.classification"] = column.classification.encode()
    if column.masking:
        metadata[b"shuyu.masking"] = column.masking.encode()
    return pa.field(
        column.name, arrow_type(column.data_type), nullable=True, metadata=metadata or None
    )


def dataset_schema(dataset: pb.Dataset, columns: Iterable[str] | None = None) -> pa.Schema:
    """The Arrow schema of a dataset as the catalog describes it.

    Args:
        dataset: a ``Dataset`` message.
        columns: keep only these columns (catalog order is kept). Unknown names raise
            ``KeyError``.
    """
    keep = None
    if columns is not None:
        keep = list(columns)
        known = {c.name for c in dataset.columns}
        missing = [c for c in keep if c not in known]
        if missing:
            raise KeyError(f"dataset {dataset.name!r} has no column(s) {', '.join(missing)}")
    fields = [column_field(c) for c in dataset.columns if keep is None or c.name in keep]
    return pa.schema(fields)


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row record batch with ``schema``."""
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def register_empty(ctx: datafusion.SessionContext, name: str, schema: pa.Schema) -> None:
    """Registers ``name`` in ``ctx`` as an empty in-memory table with ``schema``.

    The name is registered as given; use bare dataset names (``residents``), never
    ``catalog.schema.table``: the server resolves only bare names.
    """
    if "." in name:
        raise ValueError(
            f"table name {name!r} contains a '.': plans must name tables by their bare dataset name"
        )
    ctx.register_record_batches(name, [[empty_batch(schema)]])


def schema_session(
    datasets: Sequence[pb.Dataset],
    columns: Mapping[str, Iterable[str]] | None = None,
    ctx: datafusion.SessionContext | None = None,
) -> datafusion.SessionContext:
    """A DataFusion session holding each dataset as an empty table under its bare name.

    Args:
        datasets: the datasets to register.
        columns: when given, register only the datasets it names (by dataset name or id)
            and only the listed columns of each.
        ctx: register into this session instead of a new one.
    """
    import datafusion

    if ctx is None:
        ctx = datafusion.SessionContext()
    if columns is None:
        for ds in datasets:
            register_empty(ctx, ds.name, dataset_schema(ds))
        return ctx
    by_key: dict[str, pb.Dataset] = {}
    for ds in datasets:
        by_key[ds.id] = ds
        by_key.setdefault(ds.name, ds)
    for key, cols in columns.items():
        ds = by_key.get(key)
        if ds is None:
            raise LookupError(f"dataset {key!r} is not in the catalog visible to this principal")
        register_empty(ctx, ds.name, dataset_schema(ds, cols))
    return ctx


def masked_to_arrow(table: pb.MaskedTable) -> pa.Table:
    """A ``MaskedTable`` (sample or job preview) as an Arrow table of strings.

    Masked values stay strings (they are rendered by the server's masking rules); null cells
    become ``None``.
    """
    names = list(table.columns)
    values: list[list[str | None]] = [[] for _ in names]
    for i, row in enumerate(table.rows):
        if len(row.values) != len(names):
            raise ValueError(
                f"masked row {i} has {len(row.values)} values for {len(names)} columns"
            )
        nulls = list(row.is_null)
        for j, value in enumerate(row.values):
            values[j].append(None if (j < len(nulls) and nulls[j]) else value)
    # Duplicate column names (e.g. two `count(*)`) are legal in a result: build by position.
    arrays = [pa.array(col, type=pa.string()) for col in values]
    schema = pa.schema([pa.field(n, pa.string(), nullable=True) for n in names])
    return pa.Table.from_arrays(arrays, schema=schema)
