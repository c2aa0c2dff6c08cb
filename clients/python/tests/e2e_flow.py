#!/usr/bin/env python3
"""End-to-end check of the Python client against a running Shuyu server.

Not a unit test (no server is started here): a Rust test starts a real server, prepares a
tenant, an engineer, a granted dataset and an approved scenario, then runs

    python clients/python/tests/e2e_flow.py

with these environment variables:

    SHUYU_ENDPOINT      https://127.0.0.1:PORT (or host:port)
    SHUYU_CREDENTIALS   the engineer's credentials directory (ca.pem, cert.pem, key.pem)
    SHUYU_DATASET       the name of a dataset granted to the engineer's tenant
    SHUYU_SCENARIO_ID   an approved scenario of that tenant listing columns of the dataset
    SHUYU_CANARY        a raw value that must never reach the client
    SHUYU_E2E_TIMEOUT   optional: seconds to wait for each job (default 180)
    SHUYU_RECIPIENT_CREDENTIALS  optional: a recipient's credentials directory; with
                        SHUYU_REVIEWER_CREDENTIALS (reviewers' directories joined by ':')
                        the production result becomes an approved product for that
                        recipient, who downloads it with pyarrow Flight

Exit code 0 and the last line ``python-client e2e ok`` on success; otherwise exit code 1
(2 for a missing variable) and a ``python-client e2e FAILED: …`` line on stderr.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path

# Run against this checkout's package, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.protobuf import text_format

from shuyu_client import Client, ShuyuError, mode_name, pb, status_name
from shuyu_client.plans import named_tables, to_substrait
from shuyu_client.tables import register_empty


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"python-client e2e FAILED: environment variable {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


# Something that looks like a file-system path or an object path of the server's storage.
PATH_RE = re.compile(
    r"(?:^|[\s'\"`(=:,])/(?:[\w.-]+/)+[\w.-]*"  # /abs/path/...
    r"|[A-Za-z]:\\"  # C:\...
    r"|file://"
    r"|\b(?:datasets|results|objects|spill|tls|credentials)/[\w.-]+"
    r"|\.(?:parquet|pem|key|db)\b"
)


def step(message: str) -> None:
    print(f"[e2e] {message}", flush=True)


def product_flow(
    engineer: Client, endpoint: str, recipient_dir: str, job: pb.Job, errors: list[str]
) -> None:
    reviewer_dirs = [d for d in env("SHUYU_REVIEWER_CREDENTIALS").split(":") if d]
    with Client.connect(endpoint, recipient_dir, rpc_timeout=30) as recipient:
        recipient_id = recipient.whoami().id
        export = engineer.request_export(
            job,
            recipient_id=recipient_id,
            permitted_use="python e2e: regional planning only",
            expires_in_days=5,
        )
        check(
            export.status == pb.EXPORT_STATUS_IN_REVIEW,
            f"the export is {pb.ExportStatus.Name(export.status)}, not in review",
        )
        for d in reviewer_dirs:
            with Client.connect(endpoint, d, rpc_timeout=30) as reviewer:
                export = reviewer.vote(export.id, approve=True, comment="python e2e")
        check(
            export.status == pb.EXPORT_STATUS_APPROVED,
            f"after {len(reviewer_dirs)} approvals the export is "
            f"{pb.ExportStatus.Name(export.status)}",
        )
        products = {p.export_id: p for p in recipient.products()}
        check(export.id in products, "the recipient does not list its product")
        product = products[export.id]
        table = recipient.download_product(export.id)
        step(
            f"product {export.id}: {table.num_rows} rows over Arrow Flight, "
            f"columns {table.column_names}"
        )
        check(
            table.num_rows == product.n_rows,
            f"Flight gave {table.num_rows} rows, the product has {product.n_rows}",
        )
        check(table.num_rows == job.n_rows, f"the product has {table.num_rows} rows, the job {job.n_rows}")
        metadata = table.schema.metadata or {}
        check(
            metadata.get(b"shuyu.fingerprint") == product.fingerprint.encode(),
            f"the table's fingerprint metadata is {metadata.get(b'shuyu.fingerprint')!r}",
        )
        after = {p.export_id: p for p in recipient.products()}[export.id]
        check(after.download_count == product.download_count + 1, "the fetch was not counted")
    # The requesting engineer gets nothing: the product is the recipient's.
    try:
        engineer.download_product(export.id)
    except ShuyuError as e:
        check(e.code == "NOT_FOUND", f"the engineer's fetch failed with {e.code}, not NOT_FOUND")
        errors.append(e.message)
    else:
        raise Failure("the requesting engineer fetched the recipient's product")
    step(f"the engineer's fetch of {export.id}: NOT_FOUND")


def main() -> int:
    endpoint = env("SHUYU_ENDPOINT")
    credentials = env("SHUYU_CREDENTIALS")
    dataset_name = env("SHUYU_DATASET")
    scenario_id = env("SHUYU_SCENARIO_ID")
    canary = env("SHUYU_CANARY")
    timeout = float(os.environ.get("SHUYU_E2E_TIMEOUT", "180"))

    received: list[tuple[str, object]] = []
    errors: list[str] = []

    def record(method: str, response: object) -> None:
        received.append((method, response))

    def progress(p: pb.JobProgress) -> None:
        queue = f" queue={p.queue_position}" if p.queue_position else ""
        print(
            f"[e2e]   progress: stage={p.stage} rows={p.rows} bytes_scanned={p.bytes_scanned}{queue}",
            flush=True,
        )

    def finished(job: pb.Job, what: str) -> pb.Job:
        step(f"{what}: job {job.id} submitted ({status_name(job)}), waiting")
        done = client.wait(job.id, on_progress=progress, timeout=timeout)
        step(
            f"{what}: job {done.id} {status_name(done)} rows={done.n_rows} kind={done.query_kind} mode={mode_name(done)}"
        )
        check(
            done.status == pb.JOB_STATUS_SUCCEEDED,
            f"{what}: job {done.id} ended {status_name(done)}: {done.error or '(no error text)'}",
        )
        return done

    client = Client.connect(endpoint, credentials, recorder=record)
    with client:
        # 1. Who am I.
        me = client.whoami()
        step(f"whoami: {me.id} role={pb.Role.Name(me.role)} tenant={me.tenant_id}")
        check(
            me.role == pb.ROLE_ENGINEER,
            f"expected an engineer, the server says {pb.Role.Name(me.role)}",
        )

        # 2. The catalog.
        datasets = client.datasets()
        step(f"datasets: {', '.join(sorted(d.name for d in datasets)) or '(none)'}")
        matches = [d for d in datasets if d.name == dataset_name]
        check(
            len(matches) == 1,
            f"dataset {dataset_name!r} is not listed exactly once (found {len(matches)})",
        )
        dataset = matches[0]
        described = client.describe(dataset.id)
        check(described.name == dataset_name, f"DescribeDataset returned {described.name!r}")

        # 3. A masked sample.
        sample = client.sample(dataset.id)
        step(f"sample: {sample.num_rows} rows x {sample.num_columns} columns")
        check(sample.num_rows > 0, "the masked sample is empty")
        for column in sample.columns:
            for value in column.to_pylist():
                check(
                    value is None or canary not in value, "the canary appears in the masked sample"
                )

        # 4. A DataFrame over the scenario's columns: filter + group-by count (an aggregate).
        scenario = client.scenario(scenario_id)
        step(
            f"scenario: {scenario.id} {pb.ScenarioStatus.Name(scenario.status)} "
            f"data list {[(i.dataset_id, list(i.columns)) for i in scenario.data_list]}"
        )
        items = [i for i in scenario.data_list if i.dataset_id == dataset.id]
        check(
            bool(items) and bool(items[0].columns),
            f"scenario {scenario_id} lists no column of {dataset_name}",
        )
        listed = list(items[0].columns)
        by_name = {c.name: c for c in dataset.columns}
        # Group by the least identifying listed column, a string one if there is a choice.
        preference = {"ordinary": 0, "quasi_identifier": 1, "sensitive": 2, "direct_identifier": 3}

        def rank(name: str) -> tuple[int, int, int]:
            column = by_name.get(name)
            if column is None:
                return (9, 9, listed.index(name))
            return (
                preference.get(column.classification, 4),
                column.data_type != "string",
                listed.index(name),
            )

        group_col = min(listed, key=rank)
        check(
            group_col in by_name,
            f"scenario column {group_col!r} is not in the catalog entry of {dataset_name}",
        )
        step(
            f"DataFrame: {dataset_name} WHERE {group_col} IS NOT NULL GROUP BY {group_col} -> count"
        )

        from datafusion import col
        from datafusion import functions as f

        ctx = client.session(scenario)
        df = (
            ctx.table(dataset_name)
            .filter(col(group_col).is_not_null())
            .aggregate([col(group_col)], [f.count().alias("n")])
        )
        plan = to_substrait(df, ctx)  # what submit() sends (deterministic bytes)
        names = named_tables(plan)
        check(names == [[dataset_name]], f"the plan reads {names}, expected [[{dataset_name!r}]]")

        # 5. Lab.
        lab = finished(client.submit(df, mode="lab", ctx=ctx), "lab")
        check(lab.mode == pb.JOB_MODE_LAB, f"lab job has mode {mode_name(lab)}")
        check(lab.query_kind == "substrait", f"lab job query_kind is {lab.query_kind!r}")
        check(bool(lab.query_sha256), "lab job has no query_sha256")
        preview = client.preview(lab)
        step(f"lab preview: {preview.num_rows} rows, columns {preview.column_names}")
        check(preview.num_rows > 0, "the lab preview has no rows")
        local_hash = hashlib.sha256(plan).hexdigest()
        step(
            f"query_sha256 {lab.query_sha256} ({'=' if local_hash == lab.query_sha256 else '!='} sha256 of the plan bytes sent)"
        )

        # 6. Promote the lab job to production under the scenario.
        promoted = finished(client.promote(lab.id, scenario_id), "promoted")
        check(promoted.id != lab.id, "promotion returned the lab job itself")
        check(promoted.mode != pb.JOB_MODE_LAB, f"promoted job has mode {mode_name(promoted)}")
        check(
            promoted.query_sha256 == lab.query_sha256,
            f"promoted query_sha256 {promoted.query_sha256} != lab {lab.query_sha256}",
        )
        check(
            promoted.query_kind == "substrait",
            f"promoted job query_kind is {promoted.query_kind!r}",
        )
        check(
            promoted.promoted_from == lab.id,
            f"promoted job's promoted_from is {promoted.promoted_from!r}, expected {lab.id}",
        )
        check(
            promoted.scenario_id == scenario_id, f"promoted job runs under {promoted.scenario_id!r}"
        )
        step(f"promoted preview: {client.preview(promoted).num_rows} rows")

        # 7. The same DataFrame straight to production.
        direct = finished(
            client.submit(df, mode="production", scenario_id=scenario_id, ctx=ctx), "production"
        )
        check(
            direct.query_kind == "substrait", f"production job query_kind is {direct.query_kind!r}"
        )
        check(
            direct.query_sha256 == lab.query_sha256,
            "the same DataFrame serialized twice gave different query hashes "
            f"({direct.query_sha256} vs {lab.query_sha256})",
        )

        # 8. A table that is not in the catalog.
        other = client.session()
        register_empty(other, "not_a_dataset", client.schema(dataset, [group_col]))
        foreign = other.table("not_a_dataset").aggregate([], [f.count().alias("n")])
        try:
            job = client.submit(foreign, mode="lab", ctx=other)
        except ShuyuError as e:
            step(f"foreign table: refused at submit ({e.code}): {e.message}")
            errors.append(e.message)
            refusal = e.message
        else:
            job = client.wait(job.id, on_progress=progress, timeout=timeout)
            step(f"foreign table: job {job.id} {status_name(job)}: {job.error}")
            check(
                job.status == pb.JOB_STATUS_FAILED,
                f"a plan over not_a_dataset ended {status_name(job)}",
            )
            check(bool(job.error), "the failed job has no error text")
            refusal = job.error
        check(not PATH_RE.search(refusal), f"the refusal reveals a path: {refusal!r}")
        check(credentials not in refusal, "the refusal contains the credentials path")

        # 9. Usage is visible.
        usage = client.usage()
        step(f"usage: {sum(t.jobs for t in usage.tenants)} jobs this period")

        # 10. The production result as a product for a recipient, fetched over Flight.
        recipient_dir = os.environ.get("SHUYU_RECIPIENT_CREDENTIALS", "").strip()
        if recipient_dir:
            product_flow(client, endpoint, recipient_dir, direct, errors)

    # 11. The canary never reached the client: every response, as text and as bytes.
    needle = canary.encode("utf-8")
    for method, message in received:
        check(needle not in message.SerializeToString(), f"the canary is in a {method} response")
        check(
            canary not in text_format.MessageToString(message, as_utf8=True),
            f"the canary is in a {method} response (text form)",
        )
        check(canary not in repr(message), f"the canary is in a {method} response (repr)")
    for message in errors:
        check(canary not in message, "the canary is in an error message")
    step(f"canary absent from {len(received)} responses")
    print("python-client e2e ok", flush=True)
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    try:
        code = main()
    except Failure as e:
        print(f"python-client e2e FAILED: {e}", file=sys.stderr)
        code = 1
    except ShuyuError as e:
        print(
            f"python-client e2e FAILED: server error in {e.method or 'a call'}: {e.code}: {e.message or '(no message)'}",
            file=sys.stderr,
        )
        code = 1
    except Exception as e:  # noqa: BLE001
        print(f"python-client e2e FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        import traceback

        traceback.print_exc()
        code = 1
    print(f"[e2e] {time.monotonic() - started:.1f} s", file=sys.stderr)
    sys.exit(code)
