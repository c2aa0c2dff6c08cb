"""Client.download_product over Arrow Flight with mTLS, against a pyarrow Flight server that
stands in for Shuyu's (which serves DoGet only: ticket = export id)."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import _certs
import _support  # noqa: F401
import pyarrow as pa
from pyarrow import flight

from shuyu_client import Client, ShuyuError
from shuyu_client.client import flight_error_code

PRODUCT = pa.table({"region": ["区01", "区02"], "n": [50, 55]}).replace_schema_metadata(
    {"shuyu.fingerprint": "ab" * 32}
)


class FakeProducts(flight.FlightServerBase):
    """Serves one product; refuses the others the way the Shuyu server does."""

    def __init__(self, location, **kwargs):
        super().__init__(location, **kwargs)
        self.tickets: list[bytes] = []

    def do_get(self, context, ticket):
        self.tickets.append(ticket.ticket)
        if ticket.ticket == b"exp_ok":
            return flight.RecordBatchStream(PRODUCT)
        if ticket.ticket == b"exp_other":
            raise KeyError("export exp_other not found")
        if ticket.ticket == b"exp_reviewer":
            raise flight.FlightUnauthorizedError("the reviewer role may not fetch product")
        raise flight.FlightServerError("failed precondition: export exp_x expired")


@unittest.skipUnless(_certs.available(), "openssl not available")
class DownloadProduct(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.pki = _certs.make_pki(Path(cls.tmp.name))
        cls.server = FakeProducts(
            "grpc+tls://127.0.0.1:0",
            tls_certificates=[
                flight.CertKeyPair(
                    cert=cls.pki["server_cert"].read_bytes(),
                    key=cls.pki["server_key"].read_bytes(),
                )
            ],
            verify_client=True,
            root_certificates=cls.pki["ca"].read_bytes(),
        )
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.tmp.cleanup()

    def client(self) -> Client:
        # The certificate names localhost; the client reaches 127.0.0.1 and overrides the name.
        return Client.connect(f"https://127.0.0.1:{self.port}", self.pki["client_dir"], rpc_timeout=60)

    def test_the_recipient_gets_the_table_with_its_fingerprint(self):
        with self.client() as client:
            table = client.download_product("exp_ok")
        self.assertEqual(table.num_rows, 2)
        self.assertEqual(table.column("n").to_pylist(), [50, 55])
        self.assertEqual(table.schema.metadata[b"shuyu.fingerprint"], b"ab" * 32)
        self.assertIn(b"exp_ok", self.server.tickets)

    def test_refusals_carry_the_grpc_code(self):
        with self.client() as client:
            for ticket, code in (
                ("exp_other", "NOT_FOUND"),
                ("exp_reviewer", "PERMISSION_DENIED"),
            ):
                with self.assertRaises(ShuyuError) as cm:
                    client.download_product(ticket)
                self.assertEqual(cm.exception.code, code, cm.exception)
                self.assertEqual(cm.exception.method, "FlightService/DoGet")

    def test_a_bare_channel_client_cannot_fetch(self):
        import grpc

        with Client(grpc.insecure_channel("127.0.0.1:1")) as client:
            with self.assertRaises(ShuyuError) as cm:
                client.download_product("exp_ok")
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")


class ErrorCodes(unittest.TestCase):
    def test_messages_without_a_class_name_their_code(self):
        err = flight.FlightServerError(
            "Flight returned internal error, with message: x. gRPC returned failed precondition "
            "error, with message: product exp_1 expired"
        )
        self.assertEqual(flight_error_code(err), "FAILED_PRECONDITION")
        self.assertEqual(flight_error_code(flight.FlightUnavailableError("x")), "UNAVAILABLE")
        self.assertEqual(flight_error_code(RuntimeError("?")), "UNKNOWN")


if __name__ == "__main__":
    unittest.main()
