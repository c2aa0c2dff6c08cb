//! Arrow Flight on the gRPC server (R23 delivery): `DoGet` with an export id as the ticket
//! streams the product's record batches (the recipient's fingerprinted, re-keyed, rounded
//! copy, exactly the rows of the package's result file) to its recipient only. Every fetch
//! is authenticated by the client certificate like any call, audited and counted like a
//! download. Every other Flight method is UNIMPLEMENTED.

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action as FlightAction, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use shuyu_engine::read_result;
use shuyu_policy::Action;
use shuyu_vault::sha256_hex;
use tonic::{Request, Response, Status, Streaming};

use super::Api;
use super::exports::{product_copy, recipients_export, require_deliverable};
use crate::error::{Result, ServerError};
use crate::state::Caller;
use crate::store;

/// Largest Flight message the server sends (a batch is split below it).
const MAX_FLIGHT_DATA_BYTES: usize = 2 << 20;

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "Shuyu serves products over Arrow Flight with DoGet only (ticket: the export id), not \
         {method}"
    ))
}

impl Api {
    /// The recipient's product `export_id` as encoded Flight messages and their size.
    async fn fetch_product(&self, caller: &Caller, export_id: &str) -> Result<Vec<FlightData>> {
        let export = recipients_export(&self.state, caller, export_id)?;
        require_deliverable(&export, crate::now_ms())?;
        crate::lifecycle::require_exports_open(&self.state.store, &export.tenant_id)?;
        let Some(product) = export.product.clone() else {
            return Err(ServerError::FailedPrecondition(format!(
                "export {export_id} was approved before products existed: it has no \
                 fingerprinted copy to serve over Flight; download its package"
            )));
        };
        let job = self
            .state
            .store
            .read(|c| store::job_any_tenant(c, &export.job_id))?
            .ok_or_else(|| ServerError::internal("an export's job is missing"))?;
        // The product is made from the staged result it was approved on, and nothing else.
        let stored = self.state.storage.get(&job.result_file).await?;
        if sha256_hex(&stored) != job.result_sha256 {
            return Err(ServerError::internal(
                "a product's staged result does not match its recorded hash",
            ));
        }
        let staged = read_result(self.state.engine.read_result(&job.result_file).await?)?;
        let data = product_copy(
            self.state.keys.master(),
            staged,
            &job,
            export.recipient(),
            &product.fingerprint,
            product.round_counts_to,
        )?;
        if data.n_rows() != product.n_rows || data.rows_digest()? != product.rows_digest {
            return Err(ServerError::internal(
                "a product's copy does not match the rows it was registered with",
            ));
        }
        let schema = data
            .batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| ServerError::internal("a product has no batches"))?;
        let encoded: Vec<FlightData> = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
            .build(stream::iter(data.batches.into_iter().map(Ok)))
            .try_collect()
            .await
            .map_err(|e| ServerError::internal(format!("encoding a product for Flight: {e}")))?;
        let bytes: u64 = encoded
            .iter()
            .map(|d| (d.data_header.len() + d.data_body.len()) as u64)
            .sum();
        self.record_download(caller, &export, "flight", bytes)?;
        Ok(encoded)
    }
}

#[tonic::async_trait]
impl FlightService for Api {
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
        let caller = self.state.begin(&request, Action::FetchProduct)?;
        let ticket = request.into_inner().ticket;
        let id = String::from_utf8_lossy(&ticket).trim().to_owned();
        let target = format!("export:{id}");
        let result = self.fetch_product(&caller, &id).await;
        // Success is audited with the download count; a refusal is audited here.
        let encoded = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(
            stream::iter(encoded.into_iter().map(Ok)).boxed(),
        ))
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
