"""Python client for Shuyu (数域), a secure data-processing runtime.

    from shuyu_client import Client
    from datafusion import col, functions as f

    with Client.connect("https://127.0.0.1:7443", "demo-domain/credentials/engineer") as c:
        print(c.whoami().real_name)
        ctx = c.session()                       # empty tables with the catalog schemas
        df = ctx.table("health_records").aggregate([col("district")], [f.count().alias("n")])
        job = c.wait(c.submit(df, mode="lab"), on_progress=print)
        print(c.preview(job))                   # masked strings

DataFrames travel as Substrait plans (see :mod:`shuyu_client.plans`); SQL travels as text.
The protobuf messages of the wire contract are in :data:`pb` (``shuyu_client.pb.Job``, …).
"""

from ._proto.shuyu.v1 import shuyu_pb2 as pb
from ._proto.shuyu.v1 import shuyu_pb2_grpc as pb_grpc
from .client import TERMINAL, Client, mode_name, parse_endpoint, read_credentials, status_name
from .errors import ShuyuError, WaitTimeout
from .plans import canonicalize, named_tables, to_substrait
from .tables import ARROW_TYPES, arrow_type, dataset_schema, masked_to_arrow, schema_session

__version__ = "0.1.0"

__all__ = [
    "ARROW_TYPES",
    "TERMINAL",
    "Client",
    "ShuyuError",
    "WaitTimeout",
    "arrow_type",
    "canonicalize",
    "dataset_schema",
    "masked_to_arrow",
    "mode_name",
    "named_tables",
    "parse_endpoint",
    "pb",
    "pb_grpc",
    "read_credentials",
    "schema_session",
    "status_name",
    "to_substrait",
]
