"""Errors raised by the client."""

from __future__ import annotations

import grpc


class ShuyuError(Exception):
    """A call the server (or the transport) refused.

    Attributes:
        code: the gRPC status code's name, e.g. ``"NOT_FOUND"``, ``"PERMISSION_DENIED"``,
            ``"INVALID_ARGUMENT"``, ``"UNAVAILABLE"``.
        message: the server's message (safe to show: the server never puts data values in it).
        status: the :class:`grpc.StatusCode` itself (``None`` for client-side errors whose
            code does not come from gRPC).
        method: the RPC that failed, e.g. ``"JobService/SubmitJob"`` (empty for client-side
            errors).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: grpc.StatusCode | None = None,
        method: str = "",
    ) -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code}: {message}" if message else f"{where}{code}")
        self.code = code
        self.message = message
        self.status = status
        self.method = method

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError, method: str = "") -> ShuyuError:
        status = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else None
        code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
        return cls(
            code, details or "", status if isinstance(status, grpc.StatusCode) else None, method
        )

    def __repr__(self) -> str:
        return f"ShuyuError(code={self.code!r}, message={self.message!r})"


class WaitTimeout(ShuyuError, TimeoutError):
    """:meth:`shuyu_client.Client.wait` gave up before the job finished.

    The job keeps running on the server; ``job`` is its last known state.
    """

    def __init__(self, job_id: str, seconds: float, job: object = None) -> None:
        super().__init__(
            "DEADLINE_EXCEEDED",
            f"job {job_id} did not finish within {seconds:g} s",
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        self.job_id = job_id
        self.job = job
