from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_STEWARD: _ClassVar[Role]
    ROLE_ENGINEER: _ClassVar[Role]
    ROLE_REVIEWER: _ClassVar[Role]
    ROLE_AUDITOR: _ClassVar[Role]
    ROLE_RECIPIENT: _ClassVar[Role]

class DataFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_FORMAT_UNSPECIFIED: _ClassVar[DataFormat]
    DATA_FORMAT_CSV: _ClassVar[DataFormat]
    DATA_FORMAT_PARQUET: _ClassVar[DataFormat]

class ImportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_STATUS_UNSPECIFIED: _ClassVar[ImportStatus]
    IMPORT_STATUS_PENDING: _ClassVar[ImportStatus]
    IMPORT_STATUS_APPROVED: _ClassVar[ImportStatus]
    IMPORT_STATUS_REJECTED: _ClassVar[ImportStatus]
    IMPORT_STATUS_IMPORTED: _ClassVar[ImportStatus]

class TicketStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TICKET_STATUS_UNSPECIFIED: _ClassVar[TicketStatus]
    TICKET_STATUS_OPEN: _ClassVar[TicketStatus]
    TICKET_STATUS_RESOLVED: _ClassVar[TicketStatus]
    TICKET_STATUS_DECLINED: _ClassVar[TicketStatus]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class JobMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_MODE_UNSPECIFIED: _ClassVar[JobMode]
    JOB_MODE_PRODUCTION: _ClassVar[JobMode]
    JOB_MODE_LAB: _ClassVar[JobMode]

class ScenarioStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCENARIO_STATUS_UNSPECIFIED: _ClassVar[ScenarioStatus]
    SCENARIO_STATUS_PENDING: _ClassVar[ScenarioStatus]
    SCENARIO_STATUS_APPROVED: _ClassVar[ScenarioStatus]
    SCENARIO_STATUS_REJECTED: _ClassVar[ScenarioStatus]
    SCENARIO_STATUS_EXPIRED: _ClassVar[ScenarioStatus]

class ScenarioCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCENARIO_CATEGORY_UNSPECIFIED: _ClassVar[ScenarioCategory]
    SCENARIO_CATEGORY_PUBLIC_GOVERNANCE: _ClassVar[ScenarioCategory]
    SCENARIO_CATEGORY_PUBLIC_WELFARE: _ClassVar[ScenarioCategory]
    SCENARIO_CATEGORY_COMMERCIAL: _ClassVar[ScenarioCategory]

class ExportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_STATUS_UNSPECIFIED: _ClassVar[ExportStatus]
    EXPORT_STATUS_REFUSED: _ClassVar[ExportStatus]
    EXPORT_STATUS_IN_REVIEW: _ClassVar[ExportStatus]
    EXPORT_STATUS_APPROVED: _ClassVar[ExportStatus]
    EXPORT_STATUS_REJECTED: _ClassVar[ExportStatus]
    EXPORT_STATUS_RETURNED: _ClassVar[ExportStatus]
    EXPORT_STATUS_REVOKED: _ClassVar[ExportStatus]
    EXPORT_STATUS_EXPIRED: _ClassVar[ExportStatus]

class CheckOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_OUTCOME_UNSPECIFIED: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_PASS: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_FAIL: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_REVIEW: _ClassVar[CheckOutcome]

class ExportDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_DECISION_UNSPECIFIED: _ClassVar[ExportDecision]
    EXPORT_DECISION_APPROVE: _ClassVar[ExportDecision]
    EXPORT_DECISION_REJECT: _ClassVar[ExportDecision]
    EXPORT_DECISION_RETURN: _ClassVar[ExportDecision]

class ReportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_FORMAT_UNSPECIFIED: _ClassVar[ReportFormat]
    REPORT_FORMAT_MARKDOWN: _ClassVar[ReportFormat]
    REPORT_FORMAT_HTML: _ClassVar[ReportFormat]

class EvaluationOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVALUATION_OUTCOME_UNSPECIFIED: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_PASS: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_FIX_IN_30_DAYS: _ClassVar[EvaluationOutcome]
    EVALUATION_OUTCOME_FAIL: _ClassVar[EvaluationOutcome]

class AuthorizationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORIZATION_STATUS_UNSPECIFIED: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_ACTIVE: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_PENDING: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_EXPIRED: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_REVOKED: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_SUPERSEDED: _ClassVar[AuthorizationStatus]
ROLE_UNSPECIFIED: Role
ROLE_ADMIN: Role
ROLE_STEWARD: Role
ROLE_ENGINEER: Role
ROLE_REVIEWER: Role
ROLE_AUDITOR: Role
ROLE_RECIPIENT: Role
DATA_FORMAT_UNSPECIFIED: DataFormat
DATA_FORMAT_CSV: DataFormat
DATA_FORMAT_PARQUET: DataFormat
IMPORT_STATUS_UNSPECIFIED: ImportStatus
IMPORT_STATUS_PENDING: ImportStatus
IMPORT_STATUS_APPROVED: ImportStatus
IMPORT_STATUS_REJECTED: ImportStatus
IMPORT_STATUS_IMPORTED: ImportStatus
TICKET_STATUS_UNSPECIFIED: TicketStatus
TICKET_STATUS_OPEN: TicketStatus
TICKET_STATUS_RESOLVED: TicketStatus
TICKET_STATUS_DECLINED: TicketStatus
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
JOB_MODE_UNSPECIFIED: JobMode
JOB_MODE_PRODUCTION: JobMode
JOB_MODE_LAB: JobMode
SCENARIO_STATUS_UNSPECIFIED: ScenarioStatus
SCENARIO_STATUS_PENDING: ScenarioStatus
SCENARIO_STATUS_APPROVED: ScenarioStatus
SCENARIO_STATUS_REJECTED: ScenarioStatus
SCENARIO_STATUS_EXPIRED: ScenarioStatus
SCENARIO_CATEGORY_UNSPECIFIED: ScenarioCategory
SCENARIO_CATEGORY_PUBLIC_GOVERNANCE: ScenarioCategory
SCENARIO_CATEGORY_PUBLIC_WELFARE: ScenarioCategory
SCENARIO_CATEGORY_COMMERCIAL: ScenarioCategory
EXPORT_STATUS_UNSPECIFIED: ExportStatus
EXPORT_STATUS_REFUSED: ExportStatus
EXPORT_STATUS_IN_REVIEW: ExportStatus
EXPORT_STATUS_APPROVED: ExportStatus
EXPORT_STATUS_REJECTED: ExportStatus
EXPORT_STATUS_RETURNED: ExportStatus
EXPORT_STATUS_REVOKED: ExportStatus
EXPORT_STATUS_EXPIRED: ExportStatus
CHECK_OUTCOME_UNSPECIFIED: CheckOutcome
CHECK_OUTCOME_PASS: CheckOutcome
CHECK_OUTCOME_FAIL: CheckOutcome
CHECK_OUTCOME_REVIEW: CheckOutcome
EXPORT_DECISION_UNSPECIFIED: ExportDecision
EXPORT_DECISION_APPROVE: ExportDecision
EXPORT_DECISION_REJECT: ExportDecision
EXPORT_DECISION_RETURN: ExportDecision
REPORT_FORMAT_UNSPECIFIED: ReportFormat
REPORT_FORMAT_MARKDOWN: ReportFormat
REPORT_FORMAT_HTML: ReportFormat
EVALUATION_OUTCOME_UNSPECIFIED: EvaluationOutcome
EVALUATION_OUTCOME_PASS: EvaluationOutcome
EVALUATION_OUTCOME_FIX_IN_30_DAYS: EvaluationOutcome
EVALUATION_OUTCOME_FAIL: EvaluationOutcome
AUTHORIZATION_STATUS_UNSPECIFIED: AuthorizationStatus
AUTHORIZATION_STATUS_ACTIVE: AuthorizationStatus
AUTHORIZATION_STATUS_PENDING: AuthorizationStatus
AUTHORIZATION_STATUS_EXPIRED: AuthorizationStatus
AUTHORIZATION_STATUS_REVOKED: AuthorizationStatus
AUTHORIZATION_STATUS_SUPERSEDED: AuthorizationStatus

class Principal(_message.Message):
    __slots__ = ("id", "real_name", "organisation", "role", "tenant_id", "created_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    REAL_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    real_name: str
    organisation: str
    role: Role
    tenant_id: str
    created_at_ms: int
    def __init__(self, id: _Optional[str] = ..., real_name: _Optional[str] = ..., organisation: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., tenant_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("id", "name", "created_at_ms", "lab_until_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAB_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at_ms: int
    lab_until_ms: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., lab_until_ms: _Optional[int] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "data_type", "classification", "masking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    MASKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    data_type: str
    classification: str
    masking: str
    def __init__(self, name: _Optional[str] = ..., data_type: _Optional[str] = ..., classification: _Optional[str] = ..., masking: _Optional[str] = ...) -> None: ...

class MaskedTable(_message.Message):
    __slots__ = ("columns", "rows", "withheld_columns", "rows_withheld", "note")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_WITHHELD_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[MaskedRow]
    withheld_columns: _containers.RepeatedScalarFieldContainer[str]
    rows_withheld: bool
    note: str
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[MaskedRow, _Mapping]]] = ..., withheld_columns: _Optional[_Iterable[str]] = ..., rows_withheld: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class MaskedRow(_message.Message):
    __slots__ = ("values", "is_null")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    is_null: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[str]] = ..., is_null: _Optional[_Iterable[bool]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("principal",)
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("after_id", "limit")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    def __init__(self, after_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("id", "at_ms", "audience", "tenant_id", "kind", "subject", "body", "ref")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    id: int
    at_ms: int
    audience: str
    tenant_id: str
    kind: str
    subject: str
    body: str
    ref: str
    def __init__(self, id: _Optional[int] = ..., at_ms: _Optional[int] = ..., audience: _Optional[str] = ..., tenant_id: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., ref: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class CreatePrincipalRequest(_message.Message):
    __slots__ = ("real_name", "organisation", "role", "tenant_id")
    REAL_NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    real_name: str
    organisation: str
    role: Role
    tenant_id: str
    def __init__(self, real_name: _Optional[str] = ..., organisation: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class CreatePrincipalResponse(_message.Message):
    __slots__ = ("principal",)
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class ListPrincipalsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPrincipalsResponse(_message.Message):
    __slots__ = ("principals",)
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedCompositeFieldContainer[Principal]
    def __init__(self, principals: _Optional[_Iterable[_Union[Principal, _Mapping]]] = ...) -> None: ...

class IssueCertificateRequest(_message.Message):
    __slots__ = ("principal_id", "csr_pem", "validity_days")
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    principal_id: str
    csr_pem: str
    validity_days: int
    def __init__(self, principal_id: _Optional[str] = ..., csr_pem: _Optional[str] = ..., validity_days: _Optional[int] = ...) -> None: ...

class IssueCertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_certificate_pem", "fingerprint")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    ca_certificate_pem: str
    fingerprint: str
    def __init__(self, certificate_pem: _Optional[str] = ..., ca_certificate_pem: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class GrantDatasetRequest(_message.Message):
    __slots__ = ("dataset_id", "tenant_id")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    tenant_id: str
    def __init__(self, dataset_id: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class GrantDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetDatasetApproverRequest(_message.Message):
    __slots__ = ("dataset_id", "approver_id")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    approver_id: str
    def __init__(self, dataset_id: _Optional[str] = ..., approver_id: _Optional[str] = ...) -> None: ...

class SetDatasetApproverResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class SetLabAccessRequest(_message.Message):
    __slots__ = ("tenant_id", "lab_until_ms")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    lab_until_ms: int
    def __init__(self, tenant_id: _Optional[str] = ..., lab_until_ms: _Optional[int] = ...) -> None: ...

class SetLabAccessResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class IngestHeader(_message.Message):
    __slots__ = ("name", "description", "format", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    format: DataFormat
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., format: _Optional[_Union[DataFormat, str]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class IngestDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: IngestHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[IngestHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class IngestDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "name", "description", "columns", "n_rows", "steward_id", "created_at_ms", "source_sha256", "extra_approver_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    STEWARD_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    EXTRA_APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    n_rows: int
    steward_id: str
    created_at_ms: int
    source_sha256: str
    extra_approver_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., n_rows: _Optional[int] = ..., steward_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., source_sha256: _Optional[str] = ..., extra_approver_id: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class DescribeDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class SampleDatasetRequest(_message.Message):
    __slots__ = ("dataset_id", "n_rows")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    n_rows: int
    def __init__(self, dataset_id: _Optional[str] = ..., n_rows: _Optional[int] = ...) -> None: ...

class SampleDatasetResponse(_message.Message):
    __slots__ = ("sample",)
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    sample: MaskedTable
    def __init__(self, sample: _Optional[_Union[MaskedTable, _Mapping]] = ...) -> None: ...

class ImportApplication(_message.Message):
    __slots__ = ("id", "tenant_id", "applicant_id", "name", "description", "source", "legal_basis", "columns", "status", "decided_by", "decision_comment", "decided_at_ms", "dataset_id", "created_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECISION_COMMENT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    applicant_id: str
    name: str
    description: str
    source: str
    legal_basis: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    status: ImportStatus
    decided_by: str
    decision_comment: str
    decided_at_ms: int
    dataset_id: str
    created_at_ms: int
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., applicant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., legal_basis: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., status: _Optional[_Union[ImportStatus, str]] = ..., decided_by: _Optional[str] = ..., decision_comment: _Optional[str] = ..., decided_at_ms: _Optional[int] = ..., dataset_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class ApplyImportRequest(_message.Message):
    __slots__ = ("name", "description", "source", "legal_basis", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    source: str
    legal_basis: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., legal_basis: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class ApplyImportResponse(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: ImportApplication
    def __init__(self, application: _Optional[_Union[ImportApplication, _Mapping]] = ...) -> None: ...

class DecideImportRequest(_message.Message):
    __slots__ = ("import_id", "approve", "comment")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    approve: bool
    comment: str
    def __init__(self, import_id: _Optional[str] = ..., approve: _Optional[bool] = ..., comment: _Optional[str] = ...) -> None: ...

class DecideImportResponse(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: ImportApplication
    def __init__(self, application: _Optional[_Union[ImportApplication, _Mapping]] = ...) -> None: ...

class ListImportsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListImportsResponse(_message.Message):
    __slots__ = ("applications",)
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    applications: _containers.RepeatedCompositeFieldContainer[ImportApplication]
    def __init__(self, applications: _Optional[_Iterable[_Union[ImportApplication, _Mapping]]] = ...) -> None: ...

class UploadImportHeader(_message.Message):
    __slots__ = ("import_id", "format")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    format: DataFormat
    def __init__(self, import_id: _Optional[str] = ..., format: _Optional[_Union[DataFormat, str]] = ...) -> None: ...

class UploadImportRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadImportHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadImportHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadImportResponse(_message.Message):
    __slots__ = ("application", "dataset")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    application: ImportApplication
    dataset: Dataset
    def __init__(self, application: _Optional[_Union[ImportApplication, _Mapping]] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class QualityTicket(_message.Message):
    __slots__ = ("id", "dataset_id", "column", "tenant_id", "reporter_id", "description", "status", "created_at_ms", "due_at_ms", "resolved_by", "resolution", "resolved_at_ms", "overdue")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTER_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    column: str
    tenant_id: str
    reporter_id: str
    description: str
    status: TicketStatus
    created_at_ms: int
    due_at_ms: int
    resolved_by: str
    resolution: str
    resolved_at_ms: int
    overdue: bool
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., column: _Optional[str] = ..., tenant_id: _Optional[str] = ..., reporter_id: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[_Union[TicketStatus, str]] = ..., created_at_ms: _Optional[int] = ..., due_at_ms: _Optional[int] = ..., resolved_by: _Optional[str] = ..., resolution: _Optional[str] = ..., resolved_at_ms: _Optional[int] = ..., overdue: _Optional[bool] = ...) -> None: ...

class FileQualityTicketRequest(_message.Message):
    __slots__ = ("dataset_id", "column", "description")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    column: str
    description: str
    def __init__(self, dataset_id: _Optional[str] = ..., column: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class FileQualityTicketResponse(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: QualityTicket
    def __init__(self, ticket: _Optional[_Union[QualityTicket, _Mapping]] = ...) -> None: ...

class ListQualityTicketsRequest(_message.Message):
    __slots__ = ("open_only",)
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    open_only: bool
    def __init__(self, open_only: _Optional[bool] = ...) -> None: ...

class ListQualityTicketsResponse(_message.Message):
    __slots__ = ("tickets",)
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    tickets: _containers.RepeatedCompositeFieldContainer[QualityTicket]
    def __init__(self, tickets: _Optional[_Iterable[_Union[QualityTicket, _Mapping]]] = ...) -> None: ...

class ResolveQualityTicketRequest(_message.Message):
    __slots__ = ("ticket_id", "fixed", "resolution")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    fixed: bool
    resolution: str
    def __init__(self, ticket_id: _Optional[str] = ..., fixed: _Optional[bool] = ..., resolution: _Optional[str] = ...) -> None: ...

class ResolveQualityTicketResponse(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: QualityTicket
    def __init__(self, ticket: _Optional[_Union[QualityTicket, _Mapping]] = ...) -> None: ...

class RiskStop(_message.Message):
    __slots__ = ("id", "target_kind", "target_id", "raised_by", "raised_by_role", "reason", "raised_at_ms", "active", "lifted_by", "lift_comment", "lifted_at_ms", "jobs_stopped")
    ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    RAISED_BY_FIELD_NUMBER: _ClassVar[int]
    RAISED_BY_ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LIFTED_BY_FIELD_NUMBER: _ClassVar[int]
    LIFT_COMMENT_FIELD_NUMBER: _ClassVar[int]
    LIFTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    JOBS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    id: str
    target_kind: str
    target_id: str
    raised_by: str
    raised_by_role: str
    reason: str
    raised_at_ms: int
    active: bool
    lifted_by: str
    lift_comment: str
    lifted_at_ms: int
    jobs_stopped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., target_kind: _Optional[str] = ..., target_id: _Optional[str] = ..., raised_by: _Optional[str] = ..., raised_by_role: _Optional[str] = ..., reason: _Optional[str] = ..., raised_at_ms: _Optional[int] = ..., active: _Optional[bool] = ..., lifted_by: _Optional[str] = ..., lift_comment: _Optional[str] = ..., lifted_at_ms: _Optional[int] = ..., jobs_stopped: _Optional[_Iterable[str]] = ...) -> None: ...

class RaiseRiskStopRequest(_message.Message):
    __slots__ = ("dataset_id", "scenario_id", "reason")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    scenario_id: str
    reason: str
    def __init__(self, dataset_id: _Optional[str] = ..., scenario_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RaiseRiskStopResponse(_message.Message):
    __slots__ = ("stop",)
    STOP_FIELD_NUMBER: _ClassVar[int]
    stop: RiskStop
    def __init__(self, stop: _Optional[_Union[RiskStop, _Mapping]] = ...) -> None: ...

class ListRiskStopsRequest(_message.Message):
    __slots__ = ("active_only",)
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    def __init__(self, active_only: _Optional[bool] = ...) -> None: ...

class ListRiskStopsResponse(_message.Message):
    __slots__ = ("stops",)
    STOPS_FIELD_NUMBER: _ClassVar[int]
    stops: _containers.RepeatedCompositeFieldContainer[RiskStop]
    def __init__(self, stops: _Optional[_Iterable[_Union[RiskStop, _Mapping]]] = ...) -> None: ...

class LiftRiskStopRequest(_message.Message):
    __slots__ = ("stop_id", "comment")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    comment: str
    def __init__(self, stop_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class LiftRiskStopResponse(_message.Message):
    __slots__ = ("stop",)
    STOP_FIELD_NUMBER: _ClassVar[int]
    stop: RiskStop
    def __init__(self, stop: _Optional[_Union[RiskStop, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("sql", "substrait_plan", "mode", "scenario_id", "dp")
    SQL_FIELD_NUMBER: _ClassVar[int]
    SUBSTRAIT_PLAN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    sql: str
    substrait_plan: bytes
    mode: JobMode
    scenario_id: str
    dp: DpOptions
    def __init__(self, sql: _Optional[str] = ..., substrait_plan: _Optional[bytes] = ..., mode: _Optional[_Union[JobMode, str]] = ..., scenario_id: _Optional[str] = ..., dp: _Optional[_Union[DpOptions, _Mapping]] = ...) -> None: ...

class DpOptions(_message.Message):
    __slots__ = ("epsilon", "max_groups_per_unit", "max_rows_per_unit", "bounds")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUPS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    max_groups_per_unit: int
    max_rows_per_unit: int
    bounds: _containers.RepeatedCompositeFieldContainer[DpBound]
    def __init__(self, epsilon: _Optional[float] = ..., max_groups_per_unit: _Optional[int] = ..., max_rows_per_unit: _Optional[int] = ..., bounds: _Optional[_Iterable[_Union[DpBound, _Mapping]]] = ...) -> None: ...

class DpBound(_message.Message):
    __slots__ = ("column", "lower", "upper")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    column: str
    lower: float
    upper: float
    def __init__(self, column: _Optional[str] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ...) -> None: ...

class DpResult(_message.Message):
    __slots__ = ("epsilon", "delta", "threshold", "max_groups_per_unit", "max_rows_per_unit", "measures")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUPS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    MEASURES_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    threshold: int
    max_groups_per_unit: int
    max_rows_per_unit: int
    measures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., threshold: _Optional[int] = ..., max_groups_per_unit: _Optional[int] = ..., max_rows_per_unit: _Optional[int] = ..., measures: _Optional[_Iterable[str]] = ...) -> None: ...

class PrivacyBudget(_message.Message):
    __slots__ = ("tenant_id", "dataset_id", "dataset_name", "data_sha256", "epsilon_total", "epsilon_spent")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    EPSILON_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    dataset_id: str
    dataset_name: str
    data_sha256: str
    epsilon_total: float
    epsilon_spent: float
    def __init__(self, tenant_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., dataset_name: _Optional[str] = ..., data_sha256: _Optional[str] = ..., epsilon_total: _Optional[float] = ..., epsilon_spent: _Optional[float] = ...) -> None: ...

class GetPrivacyBudgetsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetPrivacyBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[PrivacyBudget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[PrivacyBudget, _Mapping]]] = ...) -> None: ...

class SetPrivacyBudgetRequest(_message.Message):
    __slots__ = ("tenant_id", "dataset_id", "epsilon_total")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    EPSILON_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    dataset_id: str
    epsilon_total: float
    def __init__(self, tenant_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., epsilon_total: _Optional[float] = ...) -> None: ...

class SetPrivacyBudgetResponse(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: PrivacyBudget
    def __init__(self, budget: _Optional[_Union[PrivacyBudget, _Mapping]] = ...) -> None: ...

class PromoteJobRequest(_message.Message):
    __slots__ = ("job_id", "scenario_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    scenario_id: str
    def __init__(self, job_id: _Optional[str] = ..., scenario_id: _Optional[str] = ...) -> None: ...

class PromoteJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("stage", "rows", "bytes_scanned", "queue_position")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    rows: int
    bytes_scanned: int
    queue_position: int
    def __init__(self, stage: _Optional[str] = ..., rows: _Optional[int] = ..., bytes_scanned: _Optional[int] = ..., queue_position: _Optional[int] = ...) -> None: ...

class JobUsage(_message.Message):
    __slots__ = ("cpu_ms", "bytes_scanned", "rows_produced", "peak_memory_bytes", "wall_ms", "queued_ms")
    CPU_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    ROWS_PRODUCED_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    WALL_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_MS_FIELD_NUMBER: _ClassVar[int]
    cpu_ms: int
    bytes_scanned: int
    rows_produced: int
    peak_memory_bytes: int
    wall_ms: int
    queued_ms: int
    def __init__(self, cpu_ms: _Optional[int] = ..., bytes_scanned: _Optional[int] = ..., rows_produced: _Optional[int] = ..., peak_memory_bytes: _Optional[int] = ..., wall_ms: _Optional[int] = ..., queued_ms: _Optional[int] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("from_ms", "to_ms", "tenant_id")
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    from_ms: int
    to_ms: int
    tenant_id: str
    def __init__(self, from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("tenant_id", "tenant_name", "jobs", "jobs_succeeded", "jobs_failed", "jobs_cancelled", "total")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_NAME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    JOBS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    JOBS_FAILED_FIELD_NUMBER: _ClassVar[int]
    JOBS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    tenant_name: str
    jobs: int
    jobs_succeeded: int
    jobs_failed: int
    jobs_cancelled: int
    total: JobUsage
    def __init__(self, tenant_id: _Optional[str] = ..., tenant_name: _Optional[str] = ..., jobs: _Optional[int] = ..., jobs_succeeded: _Optional[int] = ..., jobs_failed: _Optional[int] = ..., jobs_cancelled: _Optional[int] = ..., total: _Optional[_Union[JobUsage, _Mapping]] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("from_ms", "to_ms", "tenants")
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    from_ms: int
    to_ms: int
    tenants: _containers.RepeatedCompositeFieldContainer[TenantUsage]
    def __init__(self, from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., tenants: _Optional[_Iterable[_Union[TenantUsage, _Mapping]]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "tenant_id", "author_id", "sql", "sql_sha256", "status", "error", "error_id", "n_rows", "columns", "preview", "input_dataset_ids", "aggregate", "created_at_ms", "finished_at_ms", "progress", "usage", "mode", "scenario_id", "query_kind", "query_sha256", "promoted_from", "dp")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    SQL_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_ID_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INPUT_DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_KIND_FIELD_NUMBER: _ClassVar[int]
    QUERY_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FROM_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    author_id: str
    sql: str
    sql_sha256: str
    status: JobStatus
    error: str
    error_id: str
    n_rows: int
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    preview: MaskedTable
    input_dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    aggregate: bool
    created_at_ms: int
    finished_at_ms: int
    progress: JobProgress
    usage: JobUsage
    mode: JobMode
    scenario_id: str
    query_kind: str
    query_sha256: str
    promoted_from: str
    dp: DpResult
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., author_id: _Optional[str] = ..., sql: _Optional[str] = ..., sql_sha256: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., error: _Optional[str] = ..., error_id: _Optional[str] = ..., n_rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., preview: _Optional[_Union[MaskedTable, _Mapping]] = ..., input_dataset_ids: _Optional[_Iterable[str]] = ..., aggregate: _Optional[bool] = ..., created_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., usage: _Optional[_Union[JobUsage, _Mapping]] = ..., mode: _Optional[_Union[JobMode, str]] = ..., scenario_id: _Optional[str] = ..., query_kind: _Optional[str] = ..., query_sha256: _Optional[str] = ..., promoted_from: _Optional[str] = ..., dp: _Optional[_Union[DpResult, _Mapping]] = ...) -> None: ...

class DataListItem(_message.Message):
    __slots__ = ("dataset_id", "columns")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class ScenarioApproval(_message.Message):
    __slots__ = ("capacity", "dataset_id", "approver_id", "decided", "approved", "decided_by", "comment", "decided_at_ms")
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    capacity: str
    dataset_id: str
    approver_id: str
    decided: bool
    approved: bool
    decided_by: str
    comment: str
    decided_at_ms: int
    def __init__(self, capacity: _Optional[str] = ..., dataset_id: _Optional[str] = ..., approver_id: _Optional[str] = ..., decided: _Optional[bool] = ..., approved: _Optional[bool] = ..., decided_by: _Optional[str] = ..., comment: _Optional[str] = ..., decided_at_ms: _Optional[int] = ...) -> None: ...

class Scenario(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "purpose", "data_list", "valid_from_ms", "valid_until_ms", "status", "approvals", "applicant_id", "created_at_ms", "category")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATA_LIST_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    purpose: str
    data_list: _containers.RepeatedCompositeFieldContainer[DataListItem]
    valid_from_ms: int
    valid_until_ms: int
    status: ScenarioStatus
    approvals: _containers.RepeatedCompositeFieldContainer[ScenarioApproval]
    applicant_id: str
    created_at_ms: int
    category: ScenarioCategory
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., purpose: _Optional[str] = ..., data_list: _Optional[_Iterable[_Union[DataListItem, _Mapping]]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., status: _Optional[_Union[ScenarioStatus, str]] = ..., approvals: _Optional[_Iterable[_Union[ScenarioApproval, _Mapping]]] = ..., applicant_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., category: _Optional[_Union[ScenarioCategory, str]] = ...) -> None: ...

class ApplyScenarioRequest(_message.Message):
    __slots__ = ("name", "purpose", "data_list", "valid_from_ms", "valid_until_ms", "category")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATA_LIST_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    purpose: str
    data_list: _containers.RepeatedCompositeFieldContainer[DataListItem]
    valid_from_ms: int
    valid_until_ms: int
    category: ScenarioCategory
    def __init__(self, name: _Optional[str] = ..., purpose: _Optional[str] = ..., data_list: _Optional[_Iterable[_Union[DataListItem, _Mapping]]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., category: _Optional[_Union[ScenarioCategory, str]] = ...) -> None: ...

class ApplyScenarioResponse(_message.Message):
    __slots__ = ("scenario",)
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    scenario: Scenario
    def __init__(self, scenario: _Optional[_Union[Scenario, _Mapping]] = ...) -> None: ...

class ListScenariosRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListScenariosResponse(_message.Message):
    __slots__ = ("scenarios",)
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    scenarios: _containers.RepeatedCompositeFieldContainer[Scenario]
    def __init__(self, scenarios: _Optional[_Iterable[_Union[Scenario, _Mapping]]] = ...) -> None: ...

class GetScenarioRequest(_message.Message):
    __slots__ = ("scenario_id",)
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    scenario_id: str
    def __init__(self, scenario_id: _Optional[str] = ...) -> None: ...

class GetScenarioResponse(_message.Message):
    __slots__ = ("scenario",)
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    scenario: Scenario
    def __init__(self, scenario: _Optional[_Union[Scenario, _Mapping]] = ...) -> None: ...

class DecideScenarioRequest(_message.Message):
    __slots__ = ("scenario_id", "approve", "comment")
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    scenario_id: str
    approve: bool
    comment: str
    def __init__(self, scenario_id: _Optional[str] = ..., approve: _Optional[bool] = ..., comment: _Optional[str] = ...) -> None: ...

class DecideScenarioResponse(_message.Message):
    __slots__ = ("scenario",)
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    scenario: Scenario
    def __init__(self, scenario: _Optional[_Union[Scenario, _Mapping]] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "outcome", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: CheckOutcome
    detail: str
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[_Union[CheckOutcome, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ExportVote(_message.Message):
    __slots__ = ("reviewer_id", "decision", "shared_comment", "private_comment", "result_sha256", "query_sha256", "policy_version", "voted_at_ms")
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SHARED_COMMENT_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_COMMENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_SHA256_FIELD_NUMBER: _ClassVar[int]
    QUERY_SHA256_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    VOTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    decision: ExportDecision
    shared_comment: str
    private_comment: str
    result_sha256: str
    query_sha256: str
    policy_version: str
    voted_at_ms: int
    def __init__(self, reviewer_id: _Optional[str] = ..., decision: _Optional[_Union[ExportDecision, str]] = ..., shared_comment: _Optional[str] = ..., private_comment: _Optional[str] = ..., result_sha256: _Optional[str] = ..., query_sha256: _Optional[str] = ..., policy_version: _Optional[str] = ..., voted_at_ms: _Optional[int] = ...) -> None: ...

class ExportComment(_message.Message):
    __slots__ = ("author_id", "author_role", "private", "text", "at_ms", "from_vote")
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ROLE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    FROM_VOTE_FIELD_NUMBER: _ClassVar[int]
    author_id: str
    author_role: Role
    private: bool
    text: str
    at_ms: int
    from_vote: bool
    def __init__(self, author_id: _Optional[str] = ..., author_role: _Optional[_Union[Role, str]] = ..., private: _Optional[bool] = ..., text: _Optional[str] = ..., at_ms: _Optional[int] = ..., from_vote: _Optional[bool] = ...) -> None: ...

class ExportEvent(_message.Message):
    __slots__ = ("seq", "at_ms", "actor_id", "from_status", "to_status", "note")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    actor_id: str
    from_status: str
    to_status: str
    note: str
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., actor_id: _Optional[str] = ..., from_status: _Optional[str] = ..., to_status: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RequestExportRequest(_message.Message):
    __slots__ = ("job_id", "purpose", "format", "recipient_id", "permitted_use", "expires_in_days")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMITTED_USE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_DAYS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    purpose: str
    format: DataFormat
    recipient_id: str
    permitted_use: str
    expires_in_days: int
    def __init__(self, job_id: _Optional[str] = ..., purpose: _Optional[str] = ..., format: _Optional[_Union[DataFormat, str]] = ..., recipient_id: _Optional[str] = ..., permitted_use: _Optional[str] = ..., expires_in_days: _Optional[int] = ...) -> None: ...

class RequestExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class GetExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class GetExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class ListExportsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExportsResponse(_message.Message):
    __slots__ = ("exports",)
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[Export]
    def __init__(self, exports: _Optional[_Iterable[_Union[Export, _Mapping]]] = ...) -> None: ...

class Export(_message.Message):
    __slots__ = ("id", "job_id", "tenant_id", "requester_id", "purpose", "format", "status", "checks", "requested_at_ms", "decided_at_ms", "package_sha256", "approvals", "quorum", "n_votes", "voted", "votes", "comments", "events", "policy_version", "recipient_id", "permitted_use", "expires_in_days", "product")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    N_VOTES_FIELD_NUMBER: _ClassVar[int]
    VOTED_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMITTED_USE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_DAYS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    tenant_id: str
    requester_id: str
    purpose: str
    format: DataFormat
    status: ExportStatus
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    requested_at_ms: int
    decided_at_ms: int
    package_sha256: str
    approvals: int
    quorum: int
    n_votes: int
    voted: bool
    votes: _containers.RepeatedCompositeFieldContainer[ExportVote]
    comments: _containers.RepeatedCompositeFieldContainer[ExportComment]
    events: _containers.RepeatedCompositeFieldContainer[ExportEvent]
    policy_version: str
    recipient_id: str
    permitted_use: str
    expires_in_days: int
    product: Product
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., requester_id: _Optional[str] = ..., purpose: _Optional[str] = ..., format: _Optional[_Union[DataFormat, str]] = ..., status: _Optional[_Union[ExportStatus, str]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., requested_at_ms: _Optional[int] = ..., decided_at_ms: _Optional[int] = ..., package_sha256: _Optional[str] = ..., approvals: _Optional[int] = ..., quorum: _Optional[int] = ..., n_votes: _Optional[int] = ..., voted: _Optional[bool] = ..., votes: _Optional[_Iterable[_Union[ExportVote, _Mapping]]] = ..., comments: _Optional[_Iterable[_Union[ExportComment, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[ExportEvent, _Mapping]]] = ..., policy_version: _Optional[str] = ..., recipient_id: _Optional[str] = ..., permitted_use: _Optional[str] = ..., expires_in_days: _Optional[int] = ..., product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class PriceBasis(_message.Message):
    __slots__ = ("free", "currency", "per_10k_rows_fen", "per_download_fen", "rows", "rows_charge_fen", "charge_fen")
    FREE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PER_10K_ROWS_FEN_FIELD_NUMBER: _ClassVar[int]
    PER_DOWNLOAD_FEN_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_CHARGE_FEN_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FEN_FIELD_NUMBER: _ClassVar[int]
    free: bool
    currency: str
    per_10k_rows_fen: int
    per_download_fen: int
    rows: int
    rows_charge_fen: int
    charge_fen: int
    def __init__(self, free: _Optional[bool] = ..., currency: _Optional[str] = ..., per_10k_rows_fen: _Optional[int] = ..., per_download_fen: _Optional[int] = ..., rows: _Optional[int] = ..., rows_charge_fen: _Optional[int] = ..., charge_fen: _Optional[int] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("export_id", "tenant_id", "job_id", "scenario_id", "scenario_category", "recipient_id", "recipient_organisation", "permitted_use", "format", "status", "approved_at_ms", "expires_at_ms", "price", "n_rows", "download_count", "last_download_at_ms", "package_sha256", "fingerprint", "round_counts_to")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    PERMITTED_USE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_DOWNLOAD_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROUND_COUNTS_TO_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    tenant_id: str
    job_id: str
    scenario_id: str
    scenario_category: ScenarioCategory
    recipient_id: str
    recipient_organisation: str
    permitted_use: str
    format: DataFormat
    status: ExportStatus
    approved_at_ms: int
    expires_at_ms: int
    price: PriceBasis
    n_rows: int
    download_count: int
    last_download_at_ms: int
    package_sha256: str
    fingerprint: str
    round_counts_to: int
    def __init__(self, export_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., job_id: _Optional[str] = ..., scenario_id: _Optional[str] = ..., scenario_category: _Optional[_Union[ScenarioCategory, str]] = ..., recipient_id: _Optional[str] = ..., recipient_organisation: _Optional[str] = ..., permitted_use: _Optional[str] = ..., format: _Optional[_Union[DataFormat, str]] = ..., status: _Optional[_Union[ExportStatus, str]] = ..., approved_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., price: _Optional[_Union[PriceBasis, _Mapping]] = ..., n_rows: _Optional[int] = ..., download_count: _Optional[int] = ..., last_download_at_ms: _Optional[int] = ..., package_sha256: _Optional[str] = ..., fingerprint: _Optional[str] = ..., round_counts_to: _Optional[int] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class TraceExportRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: bytes
    def __init__(self, file: _Optional[bytes] = ...) -> None: ...

class TraceExportResponse(_message.Message):
    __slots__ = ("export_id", "recipient_id", "recipient_organisation", "tenant_id", "matched_by", "row_order_consistent", "n_candidates", "fingerprint")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_BY_FIELD_NUMBER: _ClassVar[int]
    ROW_ORDER_CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    N_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    recipient_id: str
    recipient_organisation: str
    tenant_id: str
    matched_by: str
    row_order_consistent: bool
    n_candidates: int
    fingerprint: str
    def __init__(self, export_id: _Optional[str] = ..., recipient_id: _Optional[str] = ..., recipient_organisation: _Optional[str] = ..., tenant_id: _Optional[str] = ..., matched_by: _Optional[str] = ..., row_order_consistent: _Optional[bool] = ..., n_candidates: _Optional[int] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class ReviewExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class ReviewExportResponse(_message.Message):
    __slots__ = ("export", "sql", "columns", "result_arrow_ipc", "truncated", "n_rows", "input_dataset_ids", "query_kind", "query_sha256", "result_sha256", "policy_version", "scenario_id", "lineage", "row_influencing", "unanalysable", "units", "rendered_sql", "unrendered_reason", "sources")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    RESULT_ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    INPUT_DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    QUERY_KIND_FIELD_NUMBER: _ClassVar[int]
    QUERY_SHA256_FIELD_NUMBER: _ClassVar[int]
    RESULT_SHA256_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_ID_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ROW_INFLUENCING_FIELD_NUMBER: _ClassVar[int]
    UNANALYSABLE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    RENDERED_SQL_FIELD_NUMBER: _ClassVar[int]
    UNRENDERED_REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    export: Export
    sql: str
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    result_arrow_ipc: bytes
    truncated: bool
    n_rows: int
    input_dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    query_kind: str
    query_sha256: str
    result_sha256: str
    policy_version: str
    scenario_id: str
    lineage: _containers.RepeatedCompositeFieldContainer[ColumnLineage]
    row_influencing: _containers.RepeatedCompositeFieldContainer[RowInfluence]
    unanalysable: _containers.RepeatedScalarFieldContainer[str]
    units: str
    rendered_sql: str
    unrendered_reason: str
    sources: _containers.RepeatedCompositeFieldContainer[PlanSource]
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ..., sql: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., result_arrow_ipc: _Optional[bytes] = ..., truncated: _Optional[bool] = ..., n_rows: _Optional[int] = ..., input_dataset_ids: _Optional[_Iterable[str]] = ..., query_kind: _Optional[str] = ..., query_sha256: _Optional[str] = ..., result_sha256: _Optional[str] = ..., policy_version: _Optional[str] = ..., scenario_id: _Optional[str] = ..., lineage: _Optional[_Iterable[_Union[ColumnLineage, _Mapping]]] = ..., row_influencing: _Optional[_Iterable[_Union[RowInfluence, _Mapping]]] = ..., unanalysable: _Optional[_Iterable[str]] = ..., units: _Optional[str] = ..., rendered_sql: _Optional[str] = ..., unrendered_reason: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[PlanSource, _Mapping]]] = ...) -> None: ...

class PlanSource(_message.Message):
    __slots__ = ("dataset_id", "table", "columns")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    table: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., table: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnLineage(_message.Message):
    __slots__ = ("name", "sources", "classification", "aggregated", "masked", "functions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    classification: str
    aggregated: bool
    masked: bool
    functions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., classification: _Optional[str] = ..., aggregated: _Optional[bool] = ..., masked: _Optional[bool] = ..., functions: _Optional[_Iterable[str]] = ...) -> None: ...

class RowInfluence(_message.Message):
    __slots__ = ("source", "role", "classification")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    role: str
    classification: str
    def __init__(self, source: _Optional[str] = ..., role: _Optional[str] = ..., classification: _Optional[str] = ...) -> None: ...

class VoteExportRequest(_message.Message):
    __slots__ = ("export_id", "decision", "shared_comment", "private_comment")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SHARED_COMMENT_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_COMMENT_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    decision: ExportDecision
    shared_comment: str
    private_comment: str
    def __init__(self, export_id: _Optional[str] = ..., decision: _Optional[_Union[ExportDecision, str]] = ..., shared_comment: _Optional[str] = ..., private_comment: _Optional[str] = ...) -> None: ...

class VoteExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class CommentExportRequest(_message.Message):
    __slots__ = ("export_id", "text", "private")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    text: str
    private: bool
    def __init__(self, export_id: _Optional[str] = ..., text: _Optional[str] = ..., private: _Optional[bool] = ...) -> None: ...

class CommentExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class RevokeExportRequest(_message.Message):
    __slots__ = ("export_id", "reason")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    reason: str
    def __init__(self, export_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class DownloadExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class DownloadExportResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("seq", "at_ms", "principal_id", "role", "tenant_id", "action", "target", "outcome", "detail_json", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    principal_id: str
    role: str
    tenant_id: str
    action: str
    target: str
    outcome: str
    detail_json: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., principal_id: _Optional[str] = ..., role: _Optional[str] = ..., tenant_id: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ..., detail_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditRecordsRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditRecordsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "n_records", "head_hash", "problem")
    OK_FIELD_NUMBER: _ClassVar[int]
    N_RECORDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    n_records: int
    head_hash: str
    problem: str
    def __init__(self, ok: _Optional[bool] = ..., n_records: _Optional[int] = ..., head_hash: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "kind", "tenant_id", "subject", "severity", "evidence_json", "first_seen_ms", "last_seen_ms", "count", "acked_by", "acked_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ACKED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    tenant_id: str
    subject: str
    severity: str
    evidence_json: str
    first_seen_ms: int
    last_seen_ms: int
    count: int
    acked_by: str
    acked_at_ms: int
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., tenant_id: _Optional[str] = ..., subject: _Optional[str] = ..., severity: _Optional[str] = ..., evidence_json: _Optional[str] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., count: _Optional[int] = ..., acked_by: _Optional[str] = ..., acked_at_ms: _Optional[int] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("include_acked",)
    INCLUDE_ACKED_FIELD_NUMBER: _ClassVar[int]
    include_acked: bool
    def __init__(self, include_acked: _Optional[bool] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class AckAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: int
    def __init__(self, alert_id: _Optional[int] = ...) -> None: ...

class AckAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class ScanAlertsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScanAlertsResponse(_message.Message):
    __slots__ = ("raised", "n_updated")
    RAISED_FIELD_NUMBER: _ClassVar[int]
    N_UPDATED_FIELD_NUMBER: _ClassVar[int]
    raised: _containers.RepeatedCompositeFieldContainer[Alert]
    n_updated: int
    def __init__(self, raised: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., n_updated: _Optional[int] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("tenant_id", "from_ms", "to_ms", "format")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    from_ms: int
    to_ms: int
    format: ReportFormat
    def __init__(self, tenant_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., format: _Optional[_Union[ReportFormat, str]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("content", "from_ms", "to_ms")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    content: str
    from_ms: int
    to_ms: int
    def __init__(self, content: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ...) -> None: ...

class AuditCheckpointRequest(_message.Message):
    __slots__ = ("consistency_from",)
    CONSISTENCY_FROM_FIELD_NUMBER: _ClassVar[int]
    consistency_from: int
    def __init__(self, consistency_from: _Optional[int] = ...) -> None: ...

class AuditCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "tree_size", "root_hash", "consistency_proof")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PROOF_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    tree_size: int
    root_hash: bytes
    consistency_proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, checkpoint: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., consistency_proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AuditInclusionProofRequest(_message.Message):
    __slots__ = ("seq", "tree_size")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tree_size: int
    def __init__(self, seq: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class AuditInclusionProofResponse(_message.Message):
    __slots__ = ("leaf_index", "tree_size", "record_hash", "proof")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RECORD_HASH_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    tree_size: int
    record_hash: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., record_hash: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PurgeAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeAuditResponse(_message.Message):
    __slots__ = ("n_redacted",)
    N_REDACTED_FIELD_NUMBER: _ClassVar[int]
    n_redacted: int
    def __init__(self, n_redacted: _Optional[int] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("tenant_id", "year", "outcome", "note", "fix_due_ms", "report_sha256", "evaluated_by", "evaluated_at_ms")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    FIX_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_SHA256_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_BY_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    year: int
    outcome: EvaluationOutcome
    note: str
    fix_due_ms: int
    report_sha256: str
    evaluated_by: str
    evaluated_at_ms: int
    def __init__(self, tenant_id: _Optional[str] = ..., year: _Optional[int] = ..., outcome: _Optional[_Union[EvaluationOutcome, str]] = ..., note: _Optional[str] = ..., fix_due_ms: _Optional[int] = ..., report_sha256: _Optional[str] = ..., evaluated_by: _Optional[str] = ..., evaluated_at_ms: _Optional[int] = ...) -> None: ...

class RecordEvaluationRequest(_message.Message):
    __slots__ = ("tenant_id", "year", "outcome", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    year: int
    outcome: EvaluationOutcome
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., year: _Optional[int] = ..., outcome: _Optional[_Union[EvaluationOutcome, str]] = ..., note: _Optional[str] = ...) -> None: ...

class RecordEvaluationResponse(_message.Message):
    __slots__ = ("evaluation",)
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class LiftProductionFreezeRequest(_message.Message):
    __slots__ = ("tenant_id", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class SuspendTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "reason", "fix_days", "fix_by_ms")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIX_DAYS_FIELD_NUMBER: _ClassVar[int]
    FIX_BY_MS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    reason: str
    fix_days: int
    fix_by_ms: int
    def __init__(self, tenant_id: _Optional[str] = ..., reason: _Optional[str] = ..., fix_days: _Optional[int] = ..., fix_by_ms: _Optional[int] = ...) -> None: ...

class ResumeTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class GetTenantStatusRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class TenantStatus(_message.Message):
    __slots__ = ("tenant_id", "tenant_name", "state", "suspended_at_ms", "suspend_reason", "fix_by_ms", "suspended_by", "overdue", "stopped_at_ms", "stop_reason", "stopped_by", "terminated_at_ms", "terminate_reason", "jobs_unfinished", "exports_frozen", "production_frozen_at_ms", "production_freeze_reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_REASON_FIELD_NUMBER: _ClassVar[int]
    FIX_BY_MS_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_BY_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STOPPED_BY_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_REASON_FIELD_NUMBER: _ClassVar[int]
    JOBS_UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FROZEN_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_FROZEN_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_FREEZE_REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    tenant_name: str
    state: str
    suspended_at_ms: int
    suspend_reason: str
    fix_by_ms: int
    suspended_by: str
    overdue: bool
    stopped_at_ms: int
    stop_reason: str
    stopped_by: str
    terminated_at_ms: int
    terminate_reason: str
    jobs_unfinished: int
    exports_frozen: int
    production_frozen_at_ms: int
    production_freeze_reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., tenant_name: _Optional[str] = ..., state: _Optional[str] = ..., suspended_at_ms: _Optional[int] = ..., suspend_reason: _Optional[str] = ..., fix_by_ms: _Optional[int] = ..., suspended_by: _Optional[str] = ..., overdue: _Optional[bool] = ..., stopped_at_ms: _Optional[int] = ..., stop_reason: _Optional[str] = ..., stopped_by: _Optional[str] = ..., terminated_at_ms: _Optional[int] = ..., terminate_reason: _Optional[str] = ..., jobs_unfinished: _Optional[int] = ..., exports_frozen: _Optional[int] = ..., production_frozen_at_ms: _Optional[int] = ..., production_freeze_reason: _Optional[str] = ...) -> None: ...

class TenantStatusResponse(_message.Message):
    __slots__ = ("status", "jobs_stopped")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOBS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    status: TenantStatus
    jobs_stopped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[_Union[TenantStatus, _Mapping]] = ..., jobs_stopped: _Optional[_Iterable[str]] = ...) -> None: ...

class TerminateTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TerminateTenantResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ExitReport
    def __init__(self, report: _Optional[_Union[ExitReport, _Mapping]] = ...) -> None: ...

class ExitReport(_message.Message):
    __slots__ = ("tenant_id", "created_at_ms", "report_json", "report_text", "signature_hex", "public_key_hex")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    REPORT_TEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_HEX_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_HEX_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    created_at_ms: int
    report_json: str
    report_text: str
    signature_hex: str
    public_key_hex: str
    def __init__(self, tenant_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., report_json: _Optional[str] = ..., report_text: _Optional[str] = ..., signature_hex: _Optional[str] = ..., public_key_hex: _Optional[str] = ...) -> None: ...

class GetExitReportRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetExitReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ExitReport
    def __init__(self, report: _Optional[_Union[ExitReport, _Mapping]] = ...) -> None: ...

class EmergencyStopRequest(_message.Message):
    __slots__ = ("tenant_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseStopRequest(_message.Message):
    __slots__ = ("tenant_id", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RunDrillRequest(_message.Message):
    __slots__ = ("tenant_id", "plan_id", "note")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    plan_id: str
    note: str
    def __init__(self, tenant_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class Drill(_message.Message):
    __slots__ = ("id", "tenant_id", "plan_id", "note", "run_by", "started_at_ms", "released_at_ms", "halt_ms", "jobs_stopped", "exports_frozen", "outcome")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    RUN_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HALT_MS_FIELD_NUMBER: _ClassVar[int]
    JOBS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FROZEN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    plan_id: str
    note: str
    run_by: str
    started_at_ms: int
    released_at_ms: int
    halt_ms: int
    jobs_stopped: _containers.RepeatedScalarFieldContainer[str]
    exports_frozen: int
    outcome: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., note: _Optional[str] = ..., run_by: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., released_at_ms: _Optional[int] = ..., halt_ms: _Optional[int] = ..., jobs_stopped: _Optional[_Iterable[str]] = ..., exports_frozen: _Optional[int] = ..., outcome: _Optional[str] = ...) -> None: ...

class RunDrillResponse(_message.Message):
    __slots__ = ("drill",)
    DRILL_FIELD_NUMBER: _ClassVar[int]
    drill: Drill
    def __init__(self, drill: _Optional[_Union[Drill, _Mapping]] = ...) -> None: ...

class ListDrillsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListDrillsResponse(_message.Message):
    __slots__ = ("drills",)
    DRILLS_FIELD_NUMBER: _ClassVar[int]
    drills: _containers.RepeatedCompositeFieldContainer[Drill]
    def __init__(self, drills: _Optional[_Iterable[_Union[Drill, _Mapping]]] = ...) -> None: ...

class Authorization(_message.Message):
    __slots__ = ("id", "tenant_id", "dataset_ids", "categories", "valid_from_ms", "valid_until_ms", "pricing_terms", "status", "created_by", "created_at_ms", "revoked_at_ms", "revoked_reason", "renewed_from", "renewed_by", "renewal_opens_at_ms", "has_emergency_plan")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PRICING_TERMS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_REASON_FIELD_NUMBER: _ClassVar[int]
    RENEWED_FROM_FIELD_NUMBER: _ClassVar[int]
    RENEWED_BY_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_OPENS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HAS_EMERGENCY_PLAN_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[ScenarioCategory]
    valid_from_ms: int
    valid_until_ms: int
    pricing_terms: str
    status: AuthorizationStatus
    created_by: str
    created_at_ms: int
    revoked_at_ms: int
    revoked_reason: str
    renewed_from: str
    renewed_by: str
    renewal_opens_at_ms: int
    has_emergency_plan: bool
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., dataset_ids: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[_Union[ScenarioCategory, str]]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., pricing_terms: _Optional[str] = ..., status: _Optional[_Union[AuthorizationStatus, str]] = ..., created_by: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ..., revoked_reason: _Optional[str] = ..., renewed_from: _Optional[str] = ..., renewed_by: _Optional[str] = ..., renewal_opens_at_ms: _Optional[int] = ..., has_emergency_plan: _Optional[bool] = ...) -> None: ...

class CreateAuthorizationRequest(_message.Message):
    __slots__ = ("tenant_id", "dataset_ids", "categories", "valid_from_ms", "valid_until_ms", "pricing_terms")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PRICING_TERMS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[ScenarioCategory]
    valid_from_ms: int
    valid_until_ms: int
    pricing_terms: str
    def __init__(self, tenant_id: _Optional[str] = ..., dataset_ids: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[_Union[ScenarioCategory, str]]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., pricing_terms: _Optional[str] = ...) -> None: ...

class AuthorizationResponse(_message.Message):
    __slots__ = ("authorization",)
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    authorization: Authorization
    def __init__(self, authorization: _Optional[_Union[Authorization, _Mapping]] = ...) -> None: ...

class ListAuthorizationsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListAuthorizationsResponse(_message.Message):
    __slots__ = ("authorizations",)
    AUTHORIZATIONS_FIELD_NUMBER: _ClassVar[int]
    authorizations: _containers.RepeatedCompositeFieldContainer[Authorization]
    def __init__(self, authorizations: _Optional[_Iterable[_Union[Authorization, _Mapping]]] = ...) -> None: ...

class GetAuthorizationRequest(_message.Message):
    __slots__ = ("authorization_id",)
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    def __init__(self, authorization_id: _Optional[str] = ...) -> None: ...

class RevokeAuthorizationRequest(_message.Message):
    __slots__ = ("authorization_id", "reason")
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    reason: str
    def __init__(self, authorization_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RenewAuthorizationRequest(_message.Message):
    __slots__ = ("authorization_id", "valid_until_ms", "pricing_terms")
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PRICING_TERMS_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    valid_until_ms: int
    pricing_terms: str
    def __init__(self, authorization_id: _Optional[str] = ..., valid_until_ms: _Optional[int] = ..., pricing_terms: _Optional[str] = ...) -> None: ...

class AmendAuthorizationScopeRequest(_message.Message):
    __slots__ = ("authorization_id", "add_dataset_ids", "add_categories")
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    ADD_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    add_dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    add_categories: _containers.RepeatedScalarFieldContainer[ScenarioCategory]
    def __init__(self, authorization_id: _Optional[str] = ..., add_dataset_ids: _Optional[_Iterable[str]] = ..., add_categories: _Optional[_Iterable[_Union[ScenarioCategory, str]]] = ...) -> None: ...

class EmergencyPlan(_message.Message):
    __slots__ = ("authorization_id", "summary", "contact", "actions", "created_at_ms", "updated_at_ms", "updated_by", "last_drill_at_ms")
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    LAST_DRILL_AT_MS_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    summary: str
    contact: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    created_at_ms: int
    updated_at_ms: int
    updated_by: str
    last_drill_at_ms: int
    def __init__(self, authorization_id: _Optional[str] = ..., summary: _Optional[str] = ..., contact: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., updated_by: _Optional[str] = ..., last_drill_at_ms: _Optional[int] = ...) -> None: ...

class SetEmergencyPlanRequest(_message.Message):
    __slots__ = ("authorization_id", "summary", "contact", "actions")
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    summary: str
    contact: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authorization_id: _Optional[str] = ..., summary: _Optional[str] = ..., contact: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetEmergencyPlanRequest(_message.Message):
    __slots__ = ("authorization_id",)
    AUTHORIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    authorization_id: str
    def __init__(self, authorization_id: _Optional[str] = ...) -> None: ...

class EmergencyPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: EmergencyPlan
    def __init__(self, plan: _Optional[_Union[EmergencyPlan, _Mapping]] = ...) -> None: ...

class CertificateInfo(_message.Message):
    __slots__ = ("fingerprint", "issued_at_ms", "not_after_ms", "revoked", "revoked_at_ms", "revoked_reason")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_REASON_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    issued_at_ms: int
    not_after_ms: int
    revoked: bool
    revoked_at_ms: int
    revoked_reason: str
    def __init__(self, fingerprint: _Optional[str] = ..., issued_at_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., revoked_at_ms: _Optional[int] = ..., revoked_reason: _Optional[str] = ...) -> None: ...

class Qualification(_message.Message):
    __slots__ = ("principal", "id_number_masked", "registered_at_ms", "training_passed_ms", "training_valid_until_ms", "nda_signed_ms", "nda_valid_until_ms", "required", "qualified", "problem", "disabled", "disabled_reason", "certificates")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ID_NUMBER_MASKED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PASSED_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    NDA_SIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    NDA_VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    QUALIFIED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    DISABLED_REASON_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    id_number_masked: str
    registered_at_ms: int
    training_passed_ms: int
    training_valid_until_ms: int
    nda_signed_ms: int
    nda_valid_until_ms: int
    required: bool
    qualified: bool
    problem: str
    disabled: bool
    disabled_reason: str
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateInfo]
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ..., id_number_masked: _Optional[str] = ..., registered_at_ms: _Optional[int] = ..., training_passed_ms: _Optional[int] = ..., training_valid_until_ms: _Optional[int] = ..., nda_signed_ms: _Optional[int] = ..., nda_valid_until_ms: _Optional[int] = ..., required: _Optional[bool] = ..., qualified: _Optional[bool] = ..., problem: _Optional[str] = ..., disabled: _Optional[bool] = ..., disabled_reason: _Optional[str] = ..., certificates: _Optional[_Iterable[_Union[CertificateInfo, _Mapping]]] = ...) -> None: ...

class QualifyPrincipalRequest(_message.Message):
    __slots__ = ("principal_id", "id_number", "training_passed_ms", "training_valid_until_ms", "nda_signed_ms", "nda_valid_until_ms")
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    ID_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PASSED_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    NDA_SIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    NDA_VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    principal_id: str
    id_number: str
    training_passed_ms: int
    training_valid_until_ms: int
    nda_signed_ms: int
    nda_valid_until_ms: int
    def __init__(self, principal_id: _Optional[str] = ..., id_number: _Optional[str] = ..., training_passed_ms: _Optional[int] = ..., training_valid_until_ms: _Optional[int] = ..., nda_signed_ms: _Optional[int] = ..., nda_valid_until_ms: _Optional[int] = ...) -> None: ...

class GetQualificationRequest(_message.Message):
    __slots__ = ("principal_id",)
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    principal_id: str
    def __init__(self, principal_id: _Optional[str] = ...) -> None: ...

class QualificationResponse(_message.Message):
    __slots__ = ("qualification",)
    QUALIFICATION_FIELD_NUMBER: _ClassVar[int]
    qualification: Qualification
    def __init__(self, qualification: _Optional[_Union[Qualification, _Mapping]] = ...) -> None: ...

class RevokeCertificatesRequest(_message.Message):
    __slots__ = ("principal_id", "fingerprint", "reason", "disable_principal")
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISABLE_PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal_id: str
    fingerprint: str
    reason: str
    disable_principal: bool
    def __init__(self, principal_id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., reason: _Optional[str] = ..., disable_principal: _Optional[bool] = ...) -> None: ...

class RevokeCertificatesResponse(_message.Message):
    __slots__ = ("revoked_fingerprints", "principal_disabled")
    REVOKED_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_DISABLED_FIELD_NUMBER: _ClassVar[int]
    revoked_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    principal_disabled: bool
    def __init__(self, revoked_fingerprints: _Optional[_Iterable[str]] = ..., principal_disabled: _Optional[bool] = ...) -> None: ...
