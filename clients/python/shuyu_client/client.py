"""The Shuyu client: a thin, typed layer over the gRPC API (``proto/shuyu/v1/shuyu.proto``).

Every call is made over TLS with the domain CA and the caller's mTLS client certificate;
the server maps the certificate to a principal, so no call carries an identity. Results are
the protobuf messages of the contract (``shuyu_client.pb``), except tabular data, which comes
back as Arrow tables of masked strings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, Union
from urllib.parse import urlsplit

import grpc
import pyarrow as pa

from . import plans, tables
from ._proto.shuyu.v1 import shuyu_pb2 as pb
from ._proto.shuyu.v1 import shuyu_pb2_grpc as pb_grpc
from .errors import ShuyuError, WaitTimeout

if TYPE_CHECKING:  # pragma: no cover
    import datafusion

#: The name in the server's certificate (the domain CA issues it for ``localhost``).
SERVER_NAME = "localhost"

#: Finished job states: :meth:`Client.wait` returns on these.
TERMINAL = frozenset({pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED})

_MODES = {
    "lab": pb.JOB_MODE_LAB,
    "production": pb.JOB_MODE_PRODUCTION,
    "prod": pb.JOB_MODE_PRODUCTION,
}

#: Something :meth:`Client.submit` accepts: SQL text, a DataFusion DataFrame or
#: LogicalPlan, or already-serialized Substrait bytes.
Query = Union[str, bytes, "datafusion.DataFrame", "datafusion.LogicalPlan"]

#: Called with the service-qualified method name and every response message received.
Recorder = Callable[[str, Any], None]


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """``(target, host)`` for an endpoint such as ``https://127.0.0.1:7443``,
    ``127.0.0.1:7443``, ``localhost:7443`` or ``https://[::1]:7443``.

    Plain ``http://`` is refused: the server only speaks TLS.
    """
    text = endpoint.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("https", "grpcs"):
            raise ValueError(
                f"endpoint {endpoint!r}: only https:// is supported (the server requires TLS)"
            )
        netloc = parts.netloc
        if parts.path not in ("", "/"):
            raise ValueError(f"endpoint {endpoint!r}: a gRPC endpoint has no path")
    else:
        netloc = text.rstrip("/")
    if not netloc:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    if netloc.startswith("["):  # [v6]:port
        close = netloc.find("]")
        if close < 0:
            raise ValueError(f"endpoint {endpoint!r}: unclosed '['")
        host = netloc[1:close]
        rest = netloc[close + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
        target_host = f"[{host}]"
    elif netloc.count(":") == 1:
        host, port = netloc.split(":")
        target_host = host
    else:
        host, port, target_host = netloc, "", netloc
    if not port:
        port = "443"
    if not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r}: bad port {port!r}")
    return f"{target_host}:{port}", host


def read_credentials(credentials_dir: str | os.PathLike[str]) -> tuple[bytes, bytes, bytes]:
    """``(ca_pem, cert_pem, key_pem)`` from a credentials directory holding ``ca.pem``,
    ``cert.pem`` and ``key.pem`` (the layout the ``shuyu`` CLI writes and reads)."""
    base = Path(credentials_dir)
    out = []
    for name in ("ca.pem", "cert.pem", "key.pem"):
        path = base / name
        try:
            out.append(path.read_bytes())
        except OSError as e:
            raise ShuyuError(
                "INVALID_ARGUMENT",
                f"cannot read {name} from the credentials directory: {e.strerror}",
            ) from None
    return out[0], out[1], out[2]


def _job_id(job: str | pb.Job) -> str:
    return job.id if isinstance(job, pb.Job) else job


def _mode(mode: str | int | None, scenario_id: str | None) -> int:
    if mode is None:
        return pb.JOB_MODE_PRODUCTION if scenario_id else pb.JOB_MODE_LAB
    if isinstance(mode, int):
        return mode
    try:
        return _MODES[mode.strip().lower()]
    except KeyError:
        raise ValueError(f"mode {mode!r}: expected 'lab' or 'production'") from None


class Client:
    """A connection to a Shuyu server as one principal.

    Create it with :meth:`connect` (credentials directory) or :meth:`from_pem`; use it as a
    context manager or call :meth:`close`.

    Args:
        channel: a secure gRPC channel to the server.
        rpc_timeout: deadline of each call, in seconds (``None``: no deadline).
        recorder: called as ``recorder(method, response)`` with every response message
            (for audits and tests: e.g. checking that no raw value ever reached the client).
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        rpc_timeout: float | None = 30.0,
        recorder: Recorder | None = None,
    ) -> None:
        self._channel = channel
        self.rpc_timeout = rpc_timeout
        self.recorder = recorder
        self._session = pb_grpc.SessionServiceStub(channel)
        self._catalog = pb_grpc.CatalogServiceStub(channel)
        self._jobs = pb_grpc.JobServiceStub(channel)
        self._scenarios = pb_grpc.ScenarioServiceStub(channel)
        self._exports = pb_grpc.ExportServiceStub(channel)
        #: Where and as whom to reach Arrow Flight (set by :meth:`from_pem`).
        self._flight: _FlightTarget | None = None

    # ------------------------------------------------------------------ connection

    @classmethod
    def connect(
        cls,
        endpoint: str,
        credentials_dir: str | os.PathLike[str],
        *,
        server_name: str = SERVER_NAME,
        rpc_timeout: float | None = 30.0,
        recorder: Recorder | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> Client:
        """Connects with the credentials in ``credentials_dir`` (``ca.pem``, ``cert.pem``,
        ``key.pem``).

        Args:
            endpoint: ``https://host:port`` or ``host:port``.
            credentials_dir: the principal's credentials directory.
            server_name: the name in the server certificate (``localhost`` for the domain
                CA's server certificate); used as the TLS target name when the endpoint's
                host differs.
            rpc_timeout: per-call deadline in seconds.
            recorder: see :class:`Client`.
            options: extra gRPC channel options.

        The channel connects lazily: a wrong endpoint or certificate surfaces as a
        :class:`ShuyuError` (``UNAVAILABLE``) on the first call.
        """
        ca, cert, key = read_credentials(credentials_dir)
        return cls.from_pem(
            endpoint,
            ca_pem=ca,
            cert_pem=cert,
            key_pem=key,
            server_name=server_name,
            rpc_timeout=rpc_timeout,
            recorder=recorder,
            options=options,
        )

    @classmethod
    def from_pem(
        cls,
        endpoint: str,
        *,
        ca_pem: bytes | str,
        cert_pem: bytes | str,
        key_pem: bytes | str,
        server_name: str = SERVER_NAME,
        rpc_timeout: float | None = 30.0,
        recorder: Recorder | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> Client:
        """Connects with PEM bytes: the domain CA, the client certificate and its key."""

        def as_bytes(v: bytes | str) -> bytes:
            return v.encode() if isinstance(v, str) else bytes(v)

        target, host = parse_endpoint(endpoint)
        creds = grpc.ssl_channel_credentials(
            root_certificates=as_bytes(ca_pem),
            private_key=as_bytes(key_pem),
            certificate_chain=as_bytes(cert_pem),
        )
        opts = list(options)
        if server_name and host != server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        channel = grpc.secure_channel(target, creds, options=opts)
        client = cls(channel, rpc_timeout=rpc_timeout, recorder=recorder)
        client._flight = _FlightTarget(
            location=f"grpc+tls://{target}",
            ca_pem=as_bytes(ca_pem),
            cert_pem=as_bytes(cert_pem),
            key_pem=as_bytes(key_pem),
            override_hostname=server_name if server_name and host != server_name else None,
        )
        return client

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Client(<secure channel>)"

    def _call(self, method: Callable[..., Any], name: str, request: Any) -> Any:
        try:
            response = method(request, timeout=self.rpc_timeout)
        except grpc.RpcError as err:
            raise ShuyuError.from_rpc_error(err, name) from None
        if self.recorder is not None:
            self.recorder(name, response)
        return response

    # ------------------------------------------------------------------ session

    def whoami(self) -> pb.Principal:
        """The principal the server maps this client certificate to."""
        return self._call(
            self._session.WhoAmI, "SessionService/WhoAmI", pb.WhoAmIRequest()
        ).principal

    # ------------------------------------------------------------------ catalog

    def datasets(self) -> list[pb.Dataset]:
        """The datasets this principal may see (an engineer: those granted to the tenant)."""
        resp = self._call(
            self._catalog.ListDatasets, "CatalogService/ListDatasets", pb.ListDatasetsRequest()
        )
        return list(resp.datasets)

    def describe(self, dataset_id: str) -> pb.Dataset:
        """One dataset's catalog entry, by id."""
        req = pb.DescribeDatasetRequest(dataset_id=dataset_id)
        return self._call(
            self._catalog.DescribeDataset, "CatalogService/DescribeDataset", req
        ).dataset

    def dataset(self, name_or_id: str) -> pb.Dataset:
        """A visible dataset by name or id.

        Raises:
            ShuyuError: ``NOT_FOUND`` when no visible dataset has that name or id.
        """
        found = [d for d in self.datasets() if name_or_id in (d.id, d.name)]
        if not found:
            raise ShuyuError(
                "NOT_FOUND", f"no visible dataset named {name_or_id!r}", grpc.StatusCode.NOT_FOUND
            )
        # An id match wins over a name match.
        found.sort(key=lambda d: d.id != name_or_id)
        return found[0]

    def sample(self, dataset_id: str, n_rows: int = 0) -> pa.Table:
        """A masked sample of a dataset as an Arrow table of strings (``None`` for nulls).

        Args:
            dataset_id: the dataset's id.
            n_rows: rows wanted; 0 means the policy default (the policy caps it).
        """
        req = pb.SampleDatasetRequest(dataset_id=dataset_id, n_rows=n_rows)
        resp = self._call(self._catalog.SampleDataset, "CatalogService/SampleDataset", req)
        return tables.masked_to_arrow(resp.sample)

    def schema(self, dataset: pb.Dataset | str, columns: Iterable[str] | None = None) -> pa.Schema:
        """The Arrow schema of a dataset from its catalog columns.

        ``string``, ``int64``, ``float64``, ``date``, ``bool`` map to ``pa.string()``,
        ``pa.int64()``, ``pa.float64()``, ``pa.date32()``, ``pa.bool_()``; every field is
        nullable and carries its classification and masking as metadata.

        Args:
            dataset: a ``Dataset`` message, or a dataset name or id.
            columns: only these columns.
        """
        if isinstance(dataset, str):
            dataset = self.dataset(dataset)
        return tables.dataset_schema(dataset, columns)

    def session(
        self,
        columns_filter: pb.Scenario | str | Mapping[str, Iterable[str]] | None = None,
        *,
        ctx: datafusion.SessionContext | None = None,
    ) -> datafusion.SessionContext:
        """A DataFusion session to build DataFrames against the catalog, with no data.

        Every visible dataset is registered under its bare name (``residents``) as an empty
        table with its catalog schema; build a DataFrame with ``ctx.table("residents")`` or
        ``ctx.sql(...)`` and pass it to :meth:`submit`. Nothing is executed locally.

        Args:
            columns_filter: restrict the session to what a production job may read:
                a ``Scenario`` message or a scenario id (only its data list's datasets, with
                only the listed columns), or a mapping of dataset name or id → columns.
            ctx: register into this session instead of a new one.
        """
        datasets = self.datasets()
        columns: Mapping[str, Iterable[str]] | None
        if columns_filter is None:
            columns = None
        elif isinstance(columns_filter, pb.Scenario):
            columns = {item.dataset_id: list(item.columns) for item in columns_filter.data_list}
        elif isinstance(columns_filter, str):
            scenario = self.scenario(columns_filter)
            columns = {item.dataset_id: list(item.columns) for item in scenario.data_list}
        else:
            columns = columns_filter
        return tables.schema_session(datasets, columns, ctx)

    # ------------------------------------------------------------------ jobs

    def submit(
        self,
        query: Query,
        mode: str | int | None = None,
        scenario_id: str | None = None,
        *,
        ctx: datafusion.SessionContext | None = None,
    ) -> pb.Job:
        """Submits a job and returns it as queued (see :meth:`wait`).

        Args:
            query: SQL text (sent as ``sql``), a DataFusion ``DataFrame`` or ``LogicalPlan``
                (serialized to Substrait with :func:`shuyu_client.plans.to_substrait` and sent
                as ``substrait_plan``), or Substrait bytes (sent as they are).
            mode: ``"lab"`` (masked samples of the tenant's granted datasets; the result is
                shown directly and can never be exported) or ``"production"`` (raw encrypted
                data under ``scenario_id``; the result is staged and only a masked preview is
                returned). Default: production when ``scenario_id`` is given, else lab.
            scenario_id: the approved scenario a production job runs under.
            ctx: the session a DataFrame was built in (defaults to a fresh one).

        Raises:
            ValueError: a production job without a scenario, or a plan naming a table by
                a qualified name.
            ShuyuError: the server refused the job.
        """
        job_mode = _mode(mode, scenario_id)
        if job_mode != pb.JOB_MODE_LAB and not scenario_id:
            raise ValueError("a production job needs the scenario_id it runs under")
        req = pb.SubmitJobRequest(mode=job_mode, scenario_id=scenario_id or "")
        if isinstance(query, str):
            req.sql = query
        else:
            if isinstance(query, (bytes, bytearray, memoryview)):
                plan = bytes(query)
            else:
                plan = plans.to_substrait(query, ctx)
                plans.check_bare_names(plan)
            req.substrait_plan = plan
        return self._call(self._jobs.SubmitJob, "JobService/SubmitJob", req).job

    def job(self, job_id: str | pb.Job) -> pb.Job:
        """A job of the caller's tenant (its current state)."""
        req = pb.GetJobRequest(job_id=_job_id(job_id))
        return self._call(self._jobs.GetJob, "JobService/GetJob", req).job

    def jobs(self) -> list[pb.Job]:
        """The caller's tenant's jobs."""
        return list(
            self._call(self._jobs.ListJobs, "JobService/ListJobs", pb.ListJobsRequest()).jobs
        )

    def watch(self, job_id: str | pb.Job, timeout: float | None = 300.0) -> Iterator[pb.Job]:
        """Follows a job with ``WatchJob``: yields the job now, then again each time its
        state or progress changes, ending with the finished job. The server pushes changes
        (no polling) and audits the watch once.

        A stream the server ends before the job finishes (its per-stream limit) is opened
        again. Raises :class:`WaitTimeout` after ``timeout`` seconds (``None``: never).
        """
        job_id = _job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        last: pb.Job | None = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stream = self._jobs.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=left)
            try:
                for message in stream:
                    last = message.job
                    if self.recorder is not None:
                        self.recorder("JobService/WatchJob", message)
                    yield last
                    if last.status in TERMINAL:
                        return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(job_id, timeout or 0.0, last or self.job(job_id)) from None
                raise ShuyuError.from_rpc_error(err, "JobService/WatchJob") from None
            finally:
                stream.cancel()
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job_id, timeout or 0.0, last or self.job(job_id))

    def wait(
        self,
        job_id: str | pb.Job,
        on_progress: Callable[[pb.JobProgress], None] | None = None,
        timeout: float | None = 300.0,
        *,
        initial_delay: float = 0.02,
        max_delay: float = 0.25,
    ) -> pb.Job:
        """Waits until a job has finished (succeeded, failed or been cancelled).

        Follows the job with :meth:`watch` and calls ``on_progress(progress)`` each time the
        job's ``JobProgress`` (stage, rows, bytes scanned, queue position) changes. A server
        without ``WatchJob`` (``UNIMPLEMENTED``) is polled with ``GetJob`` instead, with
        exponential backoff from ``initial_delay`` (20 ms) up to ``max_delay`` (250 ms).

        Returns:
            the finished job; check ``job.status`` (a failed job is returned, not raised).

        Raises:
            WaitTimeout: not finished within ``timeout`` seconds (``None``: wait forever);
                the job keeps running.
        """
        job_id = _job_id(job_id)
        last: list[bytes | None] = [None]

        def seen(job: pb.Job) -> None:
            if on_progress is not None and job.HasField("progress"):
                key = job.progress.SerializeToString(deterministic=True)
                if key != last[0]:
                    last[0] = key
                    on_progress(job.progress)

        try:
            for job in self.watch(job_id, timeout):
                seen(job)
                if job.status in TERMINAL:
                    return job
        except ShuyuError as err:
            if err.code != "UNIMPLEMENTED":
                raise
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = initial_delay
        while True:
            job = self.job(job_id)
            seen(job)
            if job.status in TERMINAL:
                return job
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise WaitTimeout(job_id, timeout or 0.0, job)
            sleep = delay if deadline is None else min(delay, max(0.0, deadline - now))
            time.sleep(sleep)
            delay = min(max_delay, delay * 2)

    def cancel(self, job_id: str | pb.Job) -> pb.Job:
        """Cancels a queued or running job (a finished one is returned unchanged)."""
        req = pb.CancelJobRequest(job_id=_job_id(job_id))
        return self._call(self._jobs.CancelJob, "JobService/CancelJob", req).job

    def promote(self, job_id: str | pb.Job, scenario_id: str) -> pb.Job:
        """Runs a succeeded lab job's exact query (same ``query_sha256``) in production under
        an approved scenario; returns the new production job (queued; see :meth:`wait`)."""
        req = pb.PromoteJobRequest(job_id=_job_id(job_id), scenario_id=scenario_id)
        return self._call(self._jobs.PromoteJob, "JobService/PromoteJob", req).job

    def preview(self, job: pb.Job | str) -> pa.Table:
        """A job's masked preview as an Arrow table of strings (``None`` for nulls).

        Args:
            job: a ``Job`` message, or a job id (fetched).
        """
        if isinstance(job, str):
            job = self.job(job)
        return tables.masked_to_arrow(job.preview)

    def usage(self, from_ms: int = 0, to_ms: int = 0, tenant_id: str = "") -> pb.GetUsageResponse:
        """Metered use over ``[from_ms, to_ms)`` (0, 0: the current calendar month, UTC).
        Engineers always get their own tenant; admins and auditors may pass ``tenant_id``."""
        req = pb.GetUsageRequest(from_ms=from_ms, to_ms=to_ms, tenant_id=tenant_id)
        return self._call(self._jobs.GetUsage, "JobService/GetUsage", req)

    # ------------------------------------------------------------------ scenarios

    def scenarios(self) -> list[pb.Scenario]:
        """The scenarios this principal may see (an engineer: the tenant's)."""
        resp = self._call(
            self._scenarios.ListScenarios,
            "ScenarioService/ListScenarios",
            pb.ListScenariosRequest(),
        )
        return list(resp.scenarios)

    def scenario(self, scenario_id: str) -> pb.Scenario:
        """One scenario."""
        req = pb.GetScenarioRequest(scenario_id=scenario_id)
        return self._call(self._scenarios.GetScenario, "ScenarioService/GetScenario", req).scenario

    def apply_scenario(
        self,
        name: str,
        purpose: str,
        data_list: Mapping[str, Iterable[str]],
        valid_from_ms: int = 0,
        *,
        valid_until_ms: int,
    ) -> pb.Scenario:
        """Applies for a scenario (engineers): a purpose and the datasets and columns needed.

        Args:
            name: the scenario's name.
            purpose: what the data is for.
            data_list: dataset name or id → the columns needed (at least one each). Names are
                resolved to ids through the visible catalog.
            valid_from_ms: start of validity (0: now).
            valid_until_ms: end of validity, ms since the epoch.
        """
        catalog = self.datasets()
        ids = {d.id for d in catalog}
        by_name = {d.name: d.id for d in catalog}
        items = [
            pb.DataListItem(
                dataset_id=key if key in ids else by_name.get(key, key),
                columns=list(columns),
            )
            for key, columns in data_list.items()
        ]
        req = pb.ApplyScenarioRequest(
            name=name,
            purpose=purpose,
            data_list=items,
            valid_from_ms=valid_from_ms,
            valid_until_ms=valid_until_ms,
        )
        return self._call(
            self._scenarios.ApplyScenario, "ScenarioService/ApplyScenario", req
        ).scenario

    # ------------------------------------------------------------------ products

    def request_export(
        self,
        job: str | pb.Job,
        *,
        recipient_id: str,
        permitted_use: str,
        purpose: str = "",
        expires_in_days: int = 0,
        data_format: str = "parquet",
    ) -> pb.Export:
        """Asks for a production job's result to become a data product for one recipient
        (engineers): the automated checks run now, reviewers vote next.

        Args:
            job: the succeeded production job.
            recipient_id: the recipient principal the product is for.
            permitted_use: what the recipient may use it for.
            purpose: why it is exported (default: the permitted use).
            expires_in_days: days it is usable after approval (0: 90; at most 365 and what
                the scenario has left).
            data_format: ``"parquet"`` or ``"csv"``.
        """
        formats = {"parquet": pb.DATA_FORMAT_PARQUET, "csv": pb.DATA_FORMAT_CSV}
        try:
            fmt = formats[data_format.lower()]
        except KeyError:
            raise ValueError(f"data_format {data_format!r}: expected 'parquet' or 'csv'") from None
        req = pb.RequestExportRequest(
            job_id=_job_id(job),
            purpose=purpose or permitted_use,
            format=fmt,
            recipient_id=recipient_id,
            permitted_use=permitted_use,
            expires_in_days=expires_in_days,
        )
        return self._call(self._exports.RequestExport, "ExportService/RequestExport", req).export

    def vote(self, export_id: str, approve: bool = True, comment: str = "") -> pb.Export:
        """A reviewer's vote: approve, or reject with a comment saying why."""
        decision = pb.EXPORT_DECISION_APPROVE if approve else pb.EXPORT_DECISION_REJECT
        req = pb.VoteExportRequest(export_id=export_id, decision=decision, shared_comment=comment)
        return self._call(self._exports.VoteExport, "ExportService/VoteExport", req).export

    def products(self) -> list[pb.Product]:
        """Data products: a recipient's own, an engineer's tenant's, or (reviewers) those of
        other tenants."""
        resp = self._call(
            self._exports.ListProducts, "ExportService/ListProducts", pb.ListProductsRequest()
        )
        return list(resp.products)

    def download_product(self, export_id: str) -> pa.Table:
        """The product ``export_id`` as an Arrow table, fetched over Arrow Flight (DoGet,
        the ticket being the export id) with this client's mTLS certificate: only the
        product's recipient gets it. The table is the recipient's copy, the rows of the
        package's result file in the same order; its schema metadata carries the copy's
        fingerprint under ``b"shuyu.fingerprint"``.

        Raises:
            ShuyuError: ``NOT_FOUND`` unless this principal is the recipient;
                ``FAILED_PRECONDITION`` if the product was revoked, has expired or is not
                approved; ``PERMISSION_DENIED`` for roles that may not fetch products.
        """
        if self._flight is None:
            raise ShuyuError(
                "FAILED_PRECONDITION",
                "this client was built from a bare channel: connect with Client.connect or "
                "Client.from_pem to use Arrow Flight",
            )
        return self._flight.do_get(export_id, self.rpc_timeout)

    def decide_scenario(self, scenario_id: str, approve: bool, comment: str = "") -> pb.Scenario:
        """A required approver's decision on a scenario (stewards, extra approvers, admins)."""
        req = pb.DecideScenarioRequest(scenario_id=scenario_id, approve=approve, comment=comment)
        return self._call(
            self._scenarios.DecideScenario, "ScenarioService/DecideScenario", req
        ).scenario


def status_name(job: pb.Job) -> str:
    """A job's status without the prefix: ``"SUCCEEDED"``, ``"FAILED"``, …"""
    return pb.JobStatus.Name(job.status).removeprefix("JOB_STATUS_")


def mode_name(job: pb.Job) -> str:
    """A job's mode: ``"LAB"``, ``"PRODUCTION"`` or ``"UNSPECIFIED"`` (= production)."""
    return pb.JobMode.Name(job.mode).removeprefix("JOB_MODE_")


#: gRPC status names in the messages pyarrow's Flight client gives errors it has no class
#: for (``"… gRPC returned not found error, with message: …"``).
_FLIGHT_STATUS_WORDS = {
    "not found": "NOT_FOUND",
    "failed precondition": "FAILED_PRECONDITION",
    "invalid argument": "INVALID_ARGUMENT",
    "permission denied": "PERMISSION_DENIED",
    "unimplemented": "UNIMPLEMENTED",
    "unauthenticated": "UNAUTHENTICATED",
    "unavailable": "UNAVAILABLE",
    "internal": "INTERNAL",
}


def flight_error_code(err: BaseException) -> str:
    """The gRPC status name behind an error raised by pyarrow's Flight client."""
    from pyarrow import flight

    if isinstance(err, flight.FlightUnauthorizedError):
        return "PERMISSION_DENIED"
    if isinstance(err, flight.FlightUnauthenticatedError):
        return "UNAUTHENTICATED"
    if isinstance(err, flight.FlightUnavailableError):
        return "UNAVAILABLE"
    if isinstance(err, flight.FlightTimedOutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(err, flight.FlightCancelledError):
        return "CANCELLED"
    if isinstance(err, NotImplementedError):
        return "UNIMPLEMENTED"
    if isinstance(err, KeyError):
        return "NOT_FOUND"
    text = str(err).lower()
    for words, code in _FLIGHT_STATUS_WORDS.items():
        if f"grpc returned {words} error" in text:
            return code
    return "UNKNOWN"


class _FlightTarget:
    """Arrow Flight on the server's own address, over mTLS with the client's certificate."""

    def __init__(
        self,
        *,
        location: str,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        override_hostname: str | None,
    ) -> None:
        self.location = location
        self._ca = ca_pem
        self._cert = cert_pem
        self._key = key_pem
        self.override_hostname = override_hostname

    def __repr__(self) -> str:
        return f"_FlightTarget({self.location!r})"

    def do_get(self, export_id: str, timeout: float | None) -> pa.Table:
        from pyarrow import flight

        kwargs: dict[str, Any] = {
            "tls_root_certs": self._ca,
            "cert_chain": self._cert,
            "private_key": self._key,
        }
        if self.override_hostname:
            kwargs["override_hostname"] = self.override_hostname
        client = flight.FlightClient(self.location, **kwargs)
        try:
            options = flight.FlightCallOptions(timeout=timeout)
            reader = client.do_get(flight.Ticket(export_id.encode("utf-8")), options)
            return reader.read_all()
        except (flight.FlightError, pa.ArrowException, KeyError, NotImplementedError) as err:
            raise ShuyuError(
                flight_error_code(err), str(err), method="FlightService/DoGet"
            ) from None
        finally:
            client.close()
