"""DataFrames → Substrait bytes (no server): bare table names, deterministic bytes, and plans
that DataFusion's consumer (the same datafusion-substrait the server uses) resolves and runs
like the equivalent SQL."""

import unittest

import _support  # noqa: F401
import datafusion
import pyarrow as pa
from datafusion import col, lit
from datafusion import functions as f
from datafusion.substrait import Consumer, Producer, Serde

from shuyu_client import pb
from shuyu_client.plans import canonicalize, check_bare_names, named_tables, plan_json, to_substrait
from shuyu_client.tables import dataset_schema, schema_session

RESIDENTS = pb.Dataset(
    id="ds_1",
    name="residents",
    columns=[
        pb.Column(name="district", data_type="string"),
        pb.Column(name="age", data_type="int64"),
        pb.Column(name="cost", data_type="float64"),
        pb.Column(name="born", data_type="date"),
        pb.Column(name="insured", data_type="bool"),
    ],
)
DISTRICTS = pb.Dataset(
    id="ds_2",
    name="districts",
    columns=[
        pb.Column(name="district", data_type="string"),
        pb.Column(name="pop", data_type="int64"),
    ],
)

COMPLEX_SQL = """
SELECT r.district, count(*) AS n, avg(cost) AS c, max(d.pop) AS p,
       sum(CASE WHEN insured THEN 1 ELSE 0 END) AS k, min(upper(substr(r.district, 1, 2))) AS u
FROM residents r JOIN districts d ON r.district = d.district
WHERE age BETWEEN 18 AND 65 AND born >= DATE '1980-01-01' AND r.district LIKE '%区'
GROUP BY r.district HAVING count(*) > 0 ORDER BY n DESC LIMIT 5
"""


def data_session() -> datafusion.SessionContext:
    """A session with real rows, standing in for the server's catalog."""
    import datetime as dt

    ctx = datafusion.SessionContext()
    residents = pa.table(
        {
            "district": ["海曙区", "海曙区", "江北区", None, "江北区"],
            "age": [30, 40, 50, 60, 70],
            "cost": [1.5, 2.5, 3.5, None, 4.5],
            "born": [
                dt.date(1990, 1, 1),
                dt.date(1985, 1, 1),
                dt.date(1982, 1, 1),
                dt.date(1960, 1, 1),
                dt.date(1955, 1, 1),
            ],
            "insured": [True, False, True, True, None],
        },
        schema=dataset_schema(RESIDENTS),
    )
    districts = pa.table(
        {"district": ["海曙区", "江北区"], "pop": [10, 20]}, schema=dataset_schema(DISTRICTS)
    )
    ctx.register_record_batches("residents", [residents.to_batches()])
    ctx.register_record_batches("districts", [districts.to_batches()])
    return ctx


class Serialization(unittest.TestCase):
    def setUp(self):
        self.ctx = schema_session([RESIDENTS, DISTRICTS])

    def test_dataframe_plan_names_bare_tables(self):
        df = (
            self.ctx.table("residents")
            .filter(col("age") > lit(30))
            .aggregate([col("district")], [f.count().alias("n")])
        )
        plan = to_substrait(df, self.ctx)
        self.assertIsInstance(plan, bytes)
        self.assertGreater(len(plan), 0)
        self.assertEqual(named_tables(plan), [["residents"]])
        check_bare_names(plan)  # no error
        # The read carries the catalog schema.
        read = plan_json(plan)["relations"][0]["root"]["input"]["aggregate"]["input"]["filter"][
            "input"
        ]["read"]
        self.assertEqual(
            read["baseSchema"]["names"], ["district", "age", "cost", "born", "insured"]
        )

    def test_sql_and_joins_name_every_table_bare(self):
        plan = to_substrait(self.ctx.sql(COMPLEX_SQL), self.ctx)
        self.assertEqual(sorted(named_tables(plan)), [["districts"], ["residents"]])

    def test_scenario_columns_only(self):
        ctx = schema_session([RESIDENTS, DISTRICTS], {"residents": ["district", "age"]})
        df = ctx.table("residents").aggregate([col("district")], [f.max(col("age")).alias("m")])
        plan = to_substrait(df, ctx)
        self.assertEqual(named_tables(plan), [["residents"]])
        read = plan_json(plan)["relations"][0]["root"]["input"]["aggregate"]["input"]["read"]
        self.assertEqual(read["baseSchema"]["names"], ["district", "age"])

    def test_qualified_table_names_are_caught(self):
        df = self.ctx.table("datafusion.public.residents").aggregate([], [f.count().alias("n")])
        plan = to_substrait(df, self.ctx)
        self.assertEqual(named_tables(plan), [["datafusion", "public", "residents"]])
        with self.assertRaises(ValueError):
            check_bare_names(plan)

    def test_bytes_are_deterministic(self):
        df = self.ctx.sql(COMPLEX_SQL)
        raw = {Producer.to_substrait_plan(df.logical_plan(), self.ctx).encode() for _ in range(20)}
        canonical = {to_substrait(df, self.ctx) for _ in range(20)}
        # A fresh session (as submit() uses when no ctx is given) yields the same bytes.
        canonical.add(to_substrait(df))
        self.assertEqual(len(canonical), 1, "canonical plans differ between serializations")
        # DataFusion's own output order varies (a hash map); canonicalize removes only that.
        self.assertTrue(all(len(r) == len(next(iter(canonical))) for r in raw))
        self.assertTrue(all(canonicalize(r) in canonical for r in raw))

    def test_canonicalize_leaves_garbage_alone(self):
        for junk in (b"", b"\xff\xff\xff not a plan", b"\x12\x05ab"):
            self.assertEqual(canonicalize(junk), junk)


class Consumption(unittest.TestCase):
    """The server consumes plans with datafusion-substrait 55.2, the version datafusion-python
    55.0.0 is built on; consuming here checks the plan resolves and computes what the SQL does."""

    def run_plan(self, plan: bytes, ctx: datafusion.SessionContext) -> pa.Table:
        logical = Consumer.from_substrait_plan(ctx, Serde.deserialize_bytes(plan))
        return ctx.create_dataframe_from_logical_plan(logical).to_arrow_table()

    def test_same_result_as_sql(self):
        schema_ctx = schema_session([RESIDENTS, DISTRICTS])
        data = data_session()
        plan = to_substrait(schema_ctx.sql(COMPLEX_SQL), schema_ctx)
        by_plan = self.run_plan(plan, data)
        by_sql = data.sql(COMPLEX_SQL).to_arrow_table()
        self.assertEqual(by_plan.to_pylist(), by_sql.to_pylist())
        self.assertGreater(by_plan.num_rows, 0)

    def test_dataframe_over_subset_schema_resolves_against_full_table(self):
        ctx = schema_session([RESIDENTS], {"residents": ["district", "age"]})
        df = (
            ctx.table("residents")
            .filter(col("district").is_not_null())
            .aggregate([col("district")], [f.count().alias("n")])
            .sort(col("district").sort())
        )
        got = self.run_plan(to_substrait(df, ctx), data_session())
        self.assertEqual(
            got.to_pylist(), [{"district": "江北区", "n": 2}, {"district": "海曙区", "n": 2}]
        )

    def test_unknown_table_does_not_resolve(self):
        ctx = schema_session([RESIDENTS])
        from shuyu_client.tables import register_empty

        register_empty(ctx, "not_a_dataset", dataset_schema(RESIDENTS))
        plan = to_substrait(ctx.table("not_a_dataset").aggregate([], [f.count().alias("n")]), ctx)
        self.assertEqual(named_tables(plan), [["not_a_dataset"]])
        with self.assertRaises(Exception) as cm:
            self.run_plan(plan, data_session())
        self.assertIn("not_a_dataset", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
