"""Catalog schema → Arrow mapping, masked tables, schema-only sessions (no server)."""

import unittest

import _support  # noqa: F401
import pyarrow as pa

from shuyu_client import pb
from shuyu_client.tables import (
    arrow_type,
    dataset_schema,
    masked_to_arrow,
    register_empty,
    schema_session,
)

DATASET = pb.Dataset(
    id="ds_1",
    name="residents",
    columns=[
        pb.Column(
            name="name", data_type="string", classification="direct_identifier", masking="pseudonym"
        ),
        pb.Column(name="age", data_type="int64", classification="quasi_identifier"),
        pb.Column(name="cost", data_type="float64", classification="sensitive"),
        pb.Column(name="born", data_type="date"),
        pb.Column(name="insured", data_type="bool"),
    ],
)
OTHER = pb.Dataset(
    id="ds_2", name="bus_rides", columns=[pb.Column(name="route", data_type="string")]
)


class ArrowTypes(unittest.TestCase):
    def test_catalog_types(self):
        self.assertEqual(arrow_type("string"), pa.string())
        self.assertEqual(arrow_type("int64"), pa.int64())
        self.assertEqual(arrow_type("float64"), pa.float64())
        self.assertEqual(arrow_type("date"), pa.date32())
        self.assertEqual(arrow_type("bool"), pa.bool_())

    def test_spellings_the_server_also_accepts(self):
        self.assertEqual(arrow_type(" INT64 "), pa.int64())
        self.assertEqual(arrow_type("boolean"), pa.bool_())
        self.assertEqual(arrow_type("double"), pa.float64())
        self.assertEqual(arrow_type("utf8"), pa.string())

    def test_unknown_type_is_an_error(self):
        with self.assertRaises(ValueError) as cm:
            arrow_type("decimal(10,2)")
        self.assertIn("decimal", str(cm.exception))


class DatasetSchema(unittest.TestCase):
    def test_all_columns_nullable_in_catalog_order(self):
        schema = dataset_schema(DATASET)
        self.assertEqual(schema.names, ["name", "age", "cost", "born", "insured"])
        self.assertEqual(
            [f.type for f in schema],
            [pa.string(), pa.int64(), pa.float64(), pa.date32(), pa.bool_()],
        )
        self.assertTrue(all(f.nullable for f in schema))
        self.assertEqual(
            schema.field("name").metadata[b"shuyu.classification"], b"direct_identifier"
        )
        self.assertEqual(schema.field("name").metadata[b"shuyu.masking"], b"pseudonym")

    def test_subset_keeps_catalog_order(self):
        schema = dataset_schema(DATASET, ["insured", "age"])
        self.assertEqual(schema.names, ["age", "insured"])

    def test_unknown_column(self):
        with self.assertRaises(KeyError):
            dataset_schema(DATASET, ["age", "salary"])


class MaskedTables(unittest.TestCase):
    def test_strings_and_nulls(self):
        table = pb.MaskedTable(
            columns=["district", "n"],
            rows=[
                pb.MaskedRow(values=["海曙区", "12"], is_null=[False, False]),
                pb.MaskedRow(values=["", "3"], is_null=[True, False]),
                pb.MaskedRow(values=["", ""]),  # is_null may be omitted: empty strings stay
            ],
        )
        t = masked_to_arrow(table)
        self.assertEqual(t.schema, pa.schema([("district", pa.string()), ("n", pa.string())]))
        self.assertEqual(t.column("district").to_pylist(), ["海曙区", None, ""])
        self.assertEqual(t.column("n").to_pylist(), ["12", "3", ""])

    def test_empty_and_duplicate_names(self):
        t = masked_to_arrow(pb.MaskedTable(columns=["n", "n"]))
        self.assertEqual(t.num_rows, 0)
        self.assertEqual(t.column_names, ["n", "n"])

    def test_ragged_row(self):
        with self.assertRaises(ValueError):
            masked_to_arrow(pb.MaskedTable(columns=["a", "b"], rows=[pb.MaskedRow(values=["x"])]))


class Sessions(unittest.TestCase):
    def test_every_dataset_registered_empty_with_its_schema(self):
        ctx = schema_session([DATASET, OTHER])
        self.assertEqual(ctx.catalog().schema().names(), {"residents", "bus_rides"})
        df = ctx.table("residents")
        self.assertEqual(df.schema(), dataset_schema(DATASET).remove_metadata())
        self.assertEqual(df.count(), 0)

    def test_filtered_by_name_or_id(self):
        ctx = schema_session([DATASET, OTHER], {"ds_1": ["age", "name"]})
        self.assertEqual(ctx.catalog().schema().names(), {"residents"})
        self.assertEqual(ctx.table("residents").schema().names, ["name", "age"])
        ctx = schema_session([DATASET, OTHER], {"bus_rides": ["route"]})
        self.assertEqual(ctx.catalog().schema().names(), {"bus_rides"})

    def test_filter_naming_an_invisible_dataset(self):
        with self.assertRaises(LookupError):
            schema_session([DATASET], {"ds_9": ["x"]})

    def test_qualified_names_are_refused(self):
        import datafusion

        with self.assertRaises(ValueError):
            register_empty(datafusion.SessionContext(), "public.residents", dataset_schema(DATASET))


if __name__ == "__main__":
    unittest.main()
