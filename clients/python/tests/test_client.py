"""The client against an in-process fake server (no Shuyu server needed)."""

import itertools
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import _certs
import _support  # noqa: F401
import fake_server
import grpc
from datafusion import col
from datafusion import functions as f

from shuyu_client import Client, ShuyuError, WaitTimeout, parse_endpoint, pb, read_credentials
from shuyu_client.client import status_name
from shuyu_client.plans import to_substrait


class Endpoints(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_endpoint("https://127.0.0.1:7443"), ("127.0.0.1:7443", "127.0.0.1"))
        self.assertEqual(parse_endpoint("127.0.0.1:7443"), ("127.0.0.1:7443", "127.0.0.1"))
        self.assertEqual(parse_endpoint("https://localhost:7443/"), ("localhost:7443", "localhost"))
        self.assertEqual(parse_endpoint("https://[::1]:7443"), ("[::1]:7443", "::1"))
        self.assertEqual(parse_endpoint("shuyu.example"), ("shuyu.example:443", "shuyu.example"))

    def test_refused(self):
        for bad in ("http://127.0.0.1:7443", "https://h:port", "https://h:1/api", ""):
            with self.assertRaises(ValueError, msg=bad):
                parse_endpoint(bad)

    def test_missing_credentials(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(ShuyuError) as cm:
                read_credentials(tmp)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
            self.assertIn("ca.pem", cm.exception.message)


class AgainstFake(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.port, cls.fake = fake_server.serve()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)

    def setUp(self):
        self.received = []
        self.client = Client(
            grpc.insecure_channel(f"127.0.0.1:{self.port}"),
            recorder=lambda method, msg: self.received.append((method, msg)),
        )

    def tearDown(self):
        self.client.close()

    def test_catalog(self):
        self.assertEqual(self.client.whoami().role, pb.ROLE_ENGINEER)
        names = [d.name for d in self.client.datasets()]
        self.assertEqual(names, ["residents", "bus_rides"])
        self.assertEqual(self.client.describe("ds_res").name, "residents")
        self.assertEqual(self.client.dataset("residents").id, "ds_res")
        self.assertEqual(
            self.client.schema("residents").names,
            ["name", "district", "age", "cost", "born", "insured"],
        )
        sample = self.client.sample("ds_res", n_rows=4)
        self.assertEqual(sample.num_rows, 4)
        self.assertTrue(
            all(v is None or v.startswith("p_") for v in sample.column("name").to_pylist())
        )
        self.assertIn(
            None, sample.column("name").to_pylist() + sample.column("district").to_pylist()
        )
        self.assertIn("CatalogService/SampleDataset", [m for m, _ in self.received])

    def test_errors_carry_the_grpc_code(self):
        with self.assertRaises(ShuyuError) as cm:
            self.client.describe("ds_nope")
        self.assertEqual(cm.exception.code, "NOT_FOUND")
        self.assertEqual(cm.exception.status, grpc.StatusCode.NOT_FOUND)
        self.assertIn("ds_nope", cm.exception.message)
        self.assertEqual(cm.exception.method, "CatalogService/DescribeDataset")
        self.assertEqual(
            str(cm.exception),
            "CatalogService/DescribeDataset: NOT_FOUND: dataset ds_nope not found",
        )
        with self.assertRaises(ShuyuError) as cm:
            self.client.dataset("nope")
        self.assertEqual(cm.exception.code, "NOT_FOUND")

    def test_lab_dataframe_job_with_progress(self):
        ctx = self.client.session()
        df = (
            ctx.table("residents")
            .filter(col("district").is_not_null())
            .aggregate([col("district")], [f.count().alias("n")])
        )
        job = self.client.submit(df, mode="lab", ctx=ctx)
        self.assertEqual(job.status, pb.JOB_STATUS_QUEUED)
        request = self.fake.requests[-1][1]
        self.assertEqual(request.mode, pb.JOB_MODE_LAB)
        self.assertEqual(request.sql, "")
        self.assertEqual(request.substrait_plan, to_substrait(df, ctx))
        seen = []
        done = self.client.wait(job.id, on_progress=seen.append, timeout=60)
        self.assertEqual(status_name(done), "SUCCEEDED", done.error)
        self.assertEqual(done.query_kind, "substrait")
        # Called on changes only: queued, then each running step.
        self.assertEqual([p.stage for p in seen], ["queued", "running", "running", "running"])
        self.assertEqual([p.rows for p in seen], [0, 0, 10, 20])
        preview = self.client.preview(done)
        self.assertEqual(
            sorted(preview.column("district").to_pylist()), ["江北区", "海曙区", "鄞州区"]
        )
        self.assertEqual(self.client.preview(done.id).num_rows, 3)

    def test_promote_and_direct_production_share_the_query_hash(self):
        scenario = self.client.scenario("sc_1")
        ctx = self.client.session(scenario)
        self.assertEqual(ctx.table("residents").schema().names, ["district", "age"])
        df = ctx.table("residents").aggregate([col("district")], [f.count().alias("n")])
        lab = self.client.wait(self.client.submit(df, mode="lab", ctx=ctx), timeout=60)
        self.assertEqual(lab.status, pb.JOB_STATUS_SUCCEEDED, lab.error)
        promoted = self.client.wait(self.client.promote(lab.id, "sc_1"), timeout=60)
        self.assertEqual(promoted.status, pb.JOB_STATUS_SUCCEEDED, promoted.error)
        self.assertEqual(promoted.promoted_from, lab.id)
        self.assertEqual(promoted.query_sha256, lab.query_sha256)
        direct = self.client.wait(self.client.submit(df, scenario_id="sc_1", ctx=ctx), timeout=60)
        self.assertEqual(direct.mode, pb.JOB_MODE_PRODUCTION)  # the default with a scenario
        self.assertEqual(direct.query_sha256, lab.query_sha256)
        # A session from the scenario id works the same.
        self.assertEqual(
            self.client.session("sc_1").table("residents").schema().names, ["district", "age"]
        )

    def test_sql_job_and_modes(self):
        job = self.client.submit("SELECT count(*) AS n FROM bus_rides")
        request = self.fake.requests[-1][1]
        self.assertEqual(
            (request.sql, request.substrait_plan, request.mode),
            ("SELECT count(*) AS n FROM bus_rides", b"", pb.JOB_MODE_LAB),
        )
        done = self.client.wait(job, timeout=60)
        self.assertEqual(done.query_kind, "sql")
        self.assertEqual(self.client.preview(done).column("n").to_pylist(), ["3"])
        with self.assertRaises(ValueError):
            self.client.submit("SELECT 1", mode="production")
        with self.assertRaises(ValueError):
            self.client.submit("SELECT 1", mode="sandbox")

    def test_unknown_table_fails_the_job(self):
        ctx = self.client.session()
        from shuyu_client.tables import register_empty

        register_empty(ctx, "not_a_dataset", self.client.schema("residents"))
        job = self.client.submit(
            ctx.table("not_a_dataset").aggregate([], [f.count().alias("n")]), mode="lab", ctx=ctx
        )
        done = self.client.wait(job, timeout=60)
        self.assertEqual(done.status, pb.JOB_STATUS_FAILED)
        self.assertIn("not_a_dataset", done.error)

    def test_refused_submission_raises(self):
        with self.assertRaises(ShuyuError) as cm:
            self.client.submit(b"\xff\xff\xff\xff junk", mode="lab")
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")

    def test_wait_timeout_and_cancel(self):
        job = self.client.submit("SELECT 1 AS one", mode="lab")
        # The sleeps the client asks for, not the wall clock: a loaded machine must not
        # fail this test.
        with mock.patch("shuyu_client.client.time.sleep") as sleep:
            with self.assertRaises(WaitTimeout) as cm:
                self.client.wait(job.id, timeout=0)
        sleep.assert_not_called()  # a zero timeout gives up at once
        self.assertEqual(cm.exception.code, "DEADLINE_EXCEEDED")
        self.assertEqual(cm.exception.job.id, job.id)
        cancelled = self.client.cancel(job.id)
        self.assertEqual(cancelled.status, pb.JOB_STATUS_CANCELLED)
        self.assertEqual(self.client.wait(job.id, timeout=60).status, pb.JOB_STATUS_CANCELLED)

    def test_backoff_is_capped(self):
        polls = []
        real = self.client.job

        def spy(job_id):
            polls.append(job_id)
            return real(job_id)

        self.client.job = spy

        def delays(**backoff):
            polls.clear()
            job = self.client.submit("SELECT 1 AS one", mode="lab")
            # The sleeps the client asks for, not the wall clock (a loaded machine must not
            # fail this test).
            with mock.patch("shuyu_client.client.time.sleep") as sleep:
                self.client.wait(job.id, timeout=60, **backoff)
            asked = [c.args[0] for c in sleep.call_args_list]
            self.assertEqual(len(asked), len(polls) - 1)  # one sleep between two polls
            self.assertGreaterEqual(len(asked), 4)
            return asked

        default = delays()
        self.assertAlmostEqual(default[0], 0.02)  # starts at 20 ms and doubles
        for a, b in itertools.pairwise(default):
            self.assertAlmostEqual(b, min(0.25, 2 * a))
        capped = delays(initial_delay=0.1)
        self.assertEqual(capped[:4], [0.1, 0.2, 0.25, 0.25])  # capped at 250 ms

    def test_scenarios_and_usage(self):
        self.assertEqual([s.id for s in self.client.scenarios()], ["sc_1"])
        applied = self.client.apply_scenario(
            "ridership",
            "route planning",
            {"bus_rides": ["route"], "ds_res": ["district"]},
            valid_until_ms=1_900_000_000_000,
        )
        self.assertEqual(applied.status, pb.SCENARIO_STATUS_PENDING)
        request = self.fake.requests[-1][1]
        self.assertEqual(
            [(i.dataset_id, list(i.columns)) for i in request.data_list],
            [("ds_bus", ["route"]), ("ds_res", ["district"])],
        )
        self.assertEqual(request.valid_until_ms, 1_900_000_000_000)
        self.assertEqual(self.client.usage().tenants[0].tenant_id, "tn_1")


@unittest.skipUnless(_certs.available(), "openssl not available")
class OverMutualTls(unittest.TestCase):
    """connect() over mTLS with a certificate named localhost reached as 127.0.0.1."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.pki = _certs.make_pki(Path(cls.tmp.name))
        credentials = grpc.ssl_server_credentials(
            [(cls.pki["server_key"].read_bytes(), cls.pki["server_cert"].read_bytes())],
            root_certificates=cls.pki["ca"].read_bytes(),
            require_client_auth=True,
        )
        cls.server, cls.port, cls.fake = fake_server.serve("127.0.0.1:0", credentials)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)
        cls.tmp.cleanup()

    def test_connect_with_a_credentials_directory(self):
        for endpoint in (
            f"https://127.0.0.1:{self.port}",
            f"127.0.0.1:{self.port}",
            f"https://localhost:{self.port}",
        ):
            with Client.connect(endpoint, self.pki["client_dir"], rpc_timeout=60) as client:
                self.assertEqual(client.whoami().id, "pr_eng", endpoint)

    def test_from_pem(self):
        d = self.pki["client_dir"]
        with Client.from_pem(
            f"https://127.0.0.1:{self.port}",
            ca_pem=(d / "ca.pem").read_text(),
            cert_pem=(d / "cert.pem").read_bytes(),
            key_pem=(d / "key.pem").read_bytes(),
            rpc_timeout=60,
        ) as client:
            self.assertEqual(len(client.datasets()), 2)

    def test_wrong_server_name_is_unavailable(self):
        with Client.connect(
            f"https://127.0.0.1:{self.port}",
            self.pki["client_dir"],
            server_name="shuyu.example",
            rpc_timeout=60,
        ) as client:
            with self.assertRaises(ShuyuError) as cm:
                client.whoami()
            self.assertEqual(cm.exception.code, "UNAVAILABLE")

    def test_without_a_client_certificate_is_refused(self):
        d = self.pki["client_dir"]
        channel = grpc.secure_channel(
            f"localhost:{self.port}",
            grpc.ssl_channel_credentials(root_certificates=(d / "ca.pem").read_bytes()),
        )
        with Client(channel, rpc_timeout=60) as client:
            with self.assertRaises(ShuyuError) as cm:
                client.whoami()
            self.assertEqual(cm.exception.code, "UNAVAILABLE")


if __name__ == "__main__":
    unittest.main()
