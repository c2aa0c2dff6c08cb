"""An in-process stand-in for a Shuyu server, for the client's unit tests.

It implements just enough of SessionService, CatalogService, JobService and
ScenarioService to exercise the client: one engineer, one tenant, two datasets, one
approved scenario. Dataframe jobs are really executed: the Substrait plan is consumed with
DataFusion against in-memory tables (raw rows for production, masked rows for lab), so a
plan naming an unknown table fails as it would on the server. Jobs advance one state per
``GetJob`` call (queued → running → finished) with changing progress.

This is NOT the server's behaviour in detail (no masking policy, no k-anonymity, no
sandbox); it only checks the client's side of the wire contract.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from concurrent import futures

import grpc
import pyarrow as pa

from shuyu_client import pb, pb_grpc
from shuyu_client.tables import dataset_schema

CANARY = "王秘密"

ENGINEER = pb.Principal(
    id="pr_eng", real_name="李工", organisation="测试单位", role=pb.ROLE_ENGINEER, tenant_id="tn_1"
)

RESIDENTS = pb.Dataset(
    id="ds_res",
    name="residents",
    description="resident health records",
    n_rows=6,
    columns=[
        pb.Column(
            name="name", data_type="string", classification="direct_identifier", masking="pseudonym"
        ),
        pb.Column(name="district", data_type="string", classification="ordinary", masking="keep"),
        pb.Column(name="age", data_type="int64", classification="quasi_identifier", masking="keep"),
        pb.Column(name="cost", data_type="float64", classification="sensitive", masking="keep"),
        pb.Column(
            name="born",
            data_type="date",
            classification="quasi_identifier",
            masking="generalize_date:month",
        ),
        pb.Column(name="insured", data_type="bool", classification="ordinary", masking="keep"),
    ],
)
RIDES = pb.Dataset(
    id="ds_bus",
    name="bus_rides",
    n_rows=3,
    columns=[
        pb.Column(name="route", data_type="string", classification="ordinary", masking="keep"),
        pb.Column(name="fare", data_type="float64", classification="ordinary", masking="keep"),
    ],
)

SCENARIO = pb.Scenario(
    id="sc_1",
    tenant_id="tn_1",
    name="district costs",
    purpose="testing",
    data_list=[pb.DataListItem(dataset_id="ds_res", columns=["district", "age"])],
    status=pb.SCENARIO_STATUS_APPROVED,
)


def _raw_tables() -> dict[str, pa.Table]:
    d = dt.date
    residents = pa.table(
        {
            "name": [CANARY, "张三", "李四", None, "赵六", "钱七"],
            "district": ["海曙区", "海曙区", "江北区", "江北区", None, "鄞州区"],
            "age": [34, 71, 45, 29, 52, 38],
            "cost": [120.5, 980.0, 45.25, None, 300.0, 88.0],
            "born": [
                d(1990, 5, 1),
                d(1953, 2, 9),
                d(1979, 12, 30),
                d(1995, 7, 7),
                d(1972, 1, 1),
                d(1986, 3, 3),
            ],
            "insured": [True, False, True, True, None, False],
        },
        schema=dataset_schema(RESIDENTS),
    )
    rides = pa.table(
        {"route": ["8路", "15路", "8路"], "fare": [2.0, 1.0, 2.0]}, schema=dataset_schema(RIDES)
    )
    return {"residents": residents, "bus_rides": rides}


def _mask(table: pa.Table) -> pa.Table:
    """Pseudonymise the name column (a crude stand-in for the masking policy)."""
    if "name" not in table.column_names:
        return table
    names = [
        None if v is None else "p_" + hashlib.sha256(v.encode()).hexdigest()[:12]
        for v in table.column("name").to_pylist()
    ]
    return table.set_column(table.column_names.index("name"), "name", pa.array(names, pa.string()))


def _masked_table(table: pa.Table, limit: int = 20) -> pb.MaskedTable:
    out = pb.MaskedTable(columns=table.column_names)
    for row in table.slice(0, limit).to_pylist():
        values = list(row.values())
        out.rows.append(
            pb.MaskedRow(
                values=["" if v is None else str(v) for v in values],
                is_null=[v is None for v in values],
            )
        )
    return out


class FakeShuyu(
    pb_grpc.SessionServiceServicer,
    pb_grpc.CatalogServiceServicer,
    pb_grpc.JobServiceServicer,
    pb_grpc.ScenarioServiceServicer,
):
    #: GetJob calls before a job leaves "queued" and "running".
    QUEUED_POLLS = 2
    RUNNING_POLLS = 3

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.raw = _raw_tables()
        self.jobs: dict[str, pb.Job] = {}
        self.polls: dict[str, int] = {}
        self.outcomes: dict[str, tuple[pb.Job, str]] = {}
        self.requests: list[tuple[str, object]] = []
        self.plans: dict[str, tuple[str, bytes]] = {}
        self.next_id = 0

    # ------------------------------------------------------------ session / catalog

    def WhoAmI(self, request, context):
        return pb.WhoAmIResponse(principal=ENGINEER)

    def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=[RESIDENTS, RIDES])

    def _dataset(self, dataset_id, context) -> pb.Dataset:
        for ds in (RESIDENTS, RIDES):
            if ds.id == dataset_id:
                return ds
        context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {dataset_id} not found")
        raise AssertionError  # unreachable

    def DescribeDataset(self, request, context):
        return pb.DescribeDatasetResponse(dataset=self._dataset(request.dataset_id, context))

    def SampleDataset(self, request, context):
        ds = self._dataset(request.dataset_id, context)
        table = _mask(self.raw[ds.name])
        return pb.SampleDatasetResponse(sample=_masked_table(table, request.n_rows or 5))

    # ------------------------------------------------------------ jobs

    def _run(self, job: pb.Job, sql: str, plan: bytes) -> None:
        """Executes the query now; the outcome is revealed by later GetJob calls."""
        import datafusion
        from datafusion.substrait import Consumer, Serde

        ctx = datafusion.SessionContext()
        for name, table in self.raw.items():
            data = _mask(table) if job.mode == pb.JOB_MODE_LAB else table
            ctx.register_record_batches(name, [data.to_batches()])
        done = pb.Job()
        done.CopyFrom(job)
        try:
            if plan:
                logical = Consumer.from_substrait_plan(ctx, Serde.deserialize_bytes(plan))
                df = ctx.create_dataframe_from_logical_plan(logical)
            else:
                df = ctx.sql(sql)
            result = df.to_arrow_table()
        except Exception as e:  # noqa: BLE001
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            done.status = pb.JOB_STATUS_FAILED
            done.error = f"the query cannot be planned: {text}"[:300]
        else:
            done.status = pb.JOB_STATUS_SUCCEEDED
            done.n_rows = result.num_rows
            done.preview.CopyFrom(_masked_table(_mask(result)))
        self.outcomes[job.id] = (done, "")

    def _new_job(self, mode, scenario_id, sql, plan, promoted_from="") -> pb.Job:
        with self.lock:
            self.next_id += 1
            job_id = f"job_{self.next_id}"
        query = plan if plan else sql.encode()
        job = pb.Job(
            id=job_id,
            tenant_id=ENGINEER.tenant_id,
            author_id=ENGINEER.id,
            sql=sql,
            status=pb.JOB_STATUS_QUEUED,
            mode=mode,
            scenario_id=scenario_id,
            query_kind="substrait" if plan else "sql",
            query_sha256=hashlib.sha256(query).hexdigest(),
            promoted_from=promoted_from,
            progress=pb.JobProgress(stage="queued", queue_position=1),
        )
        self._run(job, sql, plan)
        with self.lock:
            self.jobs[job_id] = job
            self.polls[job_id] = 0
            self.plans[job_id] = (sql, plan)
        return job

    def SubmitJob(self, request, context):
        self.requests.append(("SubmitJob", request))
        if bool(request.sql) == bool(request.substrait_plan):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exactly one of sql and substrait_plan")
        mode = request.mode or pb.JOB_MODE_PRODUCTION
        if mode == pb.JOB_MODE_PRODUCTION and request.scenario_id != SCENARIO.id:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "production jobs need an approved scenario"
            )
        if request.substrait_plan[:4] == b"\xff\xff\xff\xff":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the dataframe job is not a valid Substrait plan"
            )
        job = self._new_job(mode, request.scenario_id, request.sql, request.substrait_plan)
        return pb.SubmitJobResponse(job=job)

    def GetJob(self, request, context):
        with self.lock:
            job = self.jobs.get(request.job_id)
            if job is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
            if job.status in (pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_RUNNING):
                self.polls[job.id] += 1
                n = self.polls[job.id]
                if n < self.QUEUED_POLLS:
                    pass
                elif n < self.QUEUED_POLLS + self.RUNNING_POLLS:
                    job.status = pb.JOB_STATUS_RUNNING
                    k = n - self.QUEUED_POLLS
                    job.progress.CopyFrom(
                        pb.JobProgress(stage="running", rows=k * 10, bytes_scanned=k * 4096)
                    )
                else:
                    done = self.outcomes[job.id][0]
                    job.CopyFrom(done)
                    job.ClearField("progress")
                    job.usage.CopyFrom(pb.JobUsage(cpu_ms=5, rows_produced=done.n_rows))
            return pb.GetJobResponse(job=job)

    def ListJobs(self, request, context):
        with self.lock:
            return pb.ListJobsResponse(jobs=list(self.jobs.values()))

    def CancelJob(self, request, context):
        with self.lock:
            job = self.jobs.get(request.job_id)
            if job is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
            if job.status in (pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_RUNNING):
                job.status = pb.JOB_STATUS_CANCELLED
                job.ClearField("progress")
            return pb.CancelJobResponse(job=job)

    def PromoteJob(self, request, context):
        lab = self.jobs.get(request.job_id)
        if lab is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        if lab.mode != pb.JOB_MODE_LAB or lab.status != pb.JOB_STATUS_SUCCEEDED:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "only a succeeded lab job can be promoted"
            )
        if request.scenario_id != SCENARIO.id:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not an approved scenario")
        sql, plan = self.plans[lab.id]
        job = self._new_job(
            pb.JOB_MODE_PRODUCTION, request.scenario_id, sql, plan, promoted_from=lab.id
        )
        return pb.PromoteJobResponse(job=job)

    def GetUsage(self, request, context):
        with self.lock:
            jobs = list(self.jobs.values())
        usage = pb.TenantUsage(
            tenant_id="tn_1",
            tenant_name="测试",
            jobs=len(jobs),
            jobs_succeeded=sum(j.status == pb.JOB_STATUS_SUCCEEDED for j in jobs),
            jobs_failed=sum(j.status == pb.JOB_STATUS_FAILED for j in jobs),
        )
        return pb.GetUsageResponse(from_ms=request.from_ms, to_ms=request.to_ms, tenants=[usage])

    # ------------------------------------------------------------ scenarios

    def ListScenarios(self, request, context):
        return pb.ListScenariosResponse(scenarios=[SCENARIO])

    def GetScenario(self, request, context):
        if request.scenario_id != SCENARIO.id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"scenario {request.scenario_id} not found")
        return pb.GetScenarioResponse(scenario=SCENARIO)

    def ApplyScenario(self, request, context):
        self.requests.append(("ApplyScenario", request))
        return pb.ApplyScenarioResponse(
            scenario=pb.Scenario(
                id="sc_new",
                tenant_id="tn_1",
                name=request.name,
                purpose=request.purpose,
                data_list=request.data_list,
                valid_from_ms=request.valid_from_ms,
                valid_until_ms=request.valid_until_ms,
                status=pb.SCENARIO_STATUS_PENDING,
            )
        )


def serve(address: str = "127.0.0.1:0", credentials: grpc.ServerCredentials | None = None):
    """Starts a fake server; returns ``(server, port, servicer)``."""
    servicer = FakeShuyu()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_SessionServiceServicer_to_server(servicer, server)
    pb_grpc.add_CatalogServiceServicer_to_server(servicer, server)
    pb_grpc.add_JobServiceServicer_to_server(servicer, server)
    pb_grpc.add_ScenarioServiceServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    server.start()
    return server, port, servicer
