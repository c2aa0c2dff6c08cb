//! Arrow Flight on the gRPC server (R23 delivery): `DoGet` with an export id as the ticket
//! streams the product's record batches to its recipient only: the rows of the package's
//! Parquet data file (for a CSV package, the Parquet copy stored beside it with the same rows
//! in the same order), read from the sealed object row group by row group after one chunked
//! pass has checked it is the one recorded. Nothing is rebuilt per fetch and nothing is held
//! whole. Every fetch is authenticated by the client certificate like any call, audited and
//! counted like a download. Every other Flight method is UNIMPLEMENTED.

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action as FlightAction, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{BoxStream, StreamExt};
use shuyu_policy::Action;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Refusal, Result};
use crate::exports::delivery::Slice;
use crate::exports::rpc::ExportsRpc;
use crate::exports::rpc::{recipients_export, require_deliverable};
use crate::state::{Caller, Done};
use crate::store::Audited;

/// Largest Flight message the server sends (a batch is split below it).
const MAX_FLIGHT_DATA_BYTES: usize = 2 << 20;
/// Rows per batch read from a product's Parquet file.
const BATCH_ROWS: usize = 8192;

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "Shuyu serves products over Arrow Flight with DoGet only (ticket: the export id), not \
         {method}"
    ))
}

impl ExportsRpc {
    /// The Parquet file of the recipient's product `export_id`, checked, and the turn that
    /// serving it holds.
    async fn fetch_product(
        &self,
        caller: &Caller,
        export_id: &str,
    ) -> Result<Audited<(Slice, OwnedSemaphorePermit)>> {
        let export = recipients_export(&self.state, caller, export_id)?;
        require_deliverable(&export, crate::now_ms())?;
        crate::lifecycle::records::require_exports_open(&self.state.store, &export.tenant_id)?;
        let Some(product) = export.product.clone() else {
            return Err(Refusal::NoFlightCopy(format!(
                "export {export_id} was approved before products existed: it has no \
                 fingerprinted copy to serve over Flight; download its package"
            ))
            .into());
        };
        let turn = self.state.results.turn("the Flight fetch").await?;
        let slice = match &product.flight_copy {
            Some(copy) => {
                let opened = self.open_copy(copy).await?;
                let len = opened.len();
                opened.slice(0, len)
            }
            None => {
                let package = self.open_package(&export).await?;
                let data = package.data.clone();
                if !data.name.ends_with(".parquet") {
                    return Err(Refusal::NoFlightCopy(format!(
                        "product {export_id} was packaged as {} before Parquet copies were \
                         kept for Flight: download its package",
                        data.name
                    ))
                    .into());
                }
                package.opened.slice(data.offset, data.len)
            }
        };
        let bytes = match &slice {
            Slice::Sealed(s) => s.byte_len(),
            Slice::Whole(b) => b.len() as u64,
        };
        let done = self.record_download(caller, &export, "flight", bytes)?;
        Ok(done.map(|_| (slice, turn)))
    }
}

/// The batches of `slice`'s Parquet file as a stream, read on a blocking thread a batch at a
/// time (two in flight); the turn is held until the stream ends.
fn batch_stream(
    slice: Slice,
    turn: OwnedSemaphorePermit,
) -> BoxStream<'static, std::result::Result<FlightData, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let opened = match slice {
            Slice::Sealed(s) => shuyu_engine::copy_batches(s, BATCH_ROWS),
            Slice::Whole(b) => shuyu_engine::copy_batches(b, BATCH_ROWS),
        };
        let (schema, reader) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(error = %e, "a checked product copy does not read");
                let _ = schema_tx.send(None);
                return;
            }
        };
        if schema_tx.send(Some(schema)).is_err() {
            return;
        }
        for batch in reader {
            let batch = batch.map_err(|e| FlightError::ExternalError(Box::new(e)));
            let stop = batch.is_err();
            if tx.blocking_send(batch).is_err() || stop {
                break;
            }
        }
    });
    futures::stream::once(async move {
        match schema_rx.await {
            Ok(Some(schema)) => FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
                .build(ReceiverStream::new(rx))
                .map(|data| {
                    data.map_err(|e| {
                        tracing::error!(error = %e, "encoding a product for Flight");
                        Status::internal("the product could not be read to its end")
                    })
                })
                .boxed(),
            _ => futures::stream::once(async {
                Err(Status::internal("the product could not be read"))
            })
            .boxed(),
        }
    })
    .flatten()
    .boxed()
}

#[tonic::async_trait]
impl FlightService for ExportsRpc {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let product_id =
            |ticket: &Ticket| String::from_utf8_lossy(&ticket.ticket).trim().to_owned();
        let target = |ticket: &Ticket| format!("export:{}", product_id(ticket));
        // Success is audited with the download count; a refusal by the call.
        let (slice, turn) = self
            .state
            .calls
            .call(
                request,
                Action::FetchProduct,
                target,
                |caller, ticket| async move {
                    let fetched = self.fetch_product(&caller, &product_id(&ticket)).await?;
                    Ok(Done::Audited(fetched))
                },
            )
            .await?;
        Ok(Response::new(batch_stream(slice, turn)))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(unimplemented(
            "Handshake (the client certificate is the identity)",
        ))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(unimplemented("ListFlights (ListProducts lists products)"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented("GetFlightInfo"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(unimplemented("PollFlightInfo"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(unimplemented("GetSchema"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(unimplemented("DoPut"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(unimplemented("DoExchange"))
    }

    async fn do_action(
        &self,
        _request: Request<FlightAction>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(unimplemented("DoAction"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(unimplemented("ListActions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_methods_say_what_is_served() {
        let status = unimplemented("DoPut");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("DoGet"));
    }
}
