//! OTLP over gRPC with tonic: one channel per endpoint, gzip, TLS for `https://`
//! endpoints (webpki roots), headers as metadata, and the server's `RetryInfo`.

use std::str::FromStr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use super::{settle, Delivery, OtlpSettings, Sent, SignalOutcome, SinkError};
use crate::signal::OtlpBatch;

/// Decompressed responses larger than this are refused.
const MAX_RESPONSE: usize = 4 << 20;

/// Sends batches to an OTLP/gRPC endpoint.
pub struct GrpcSink {
    endpoint: String,
    logs: LogsServiceClient<Channel>,
    traces: TraceServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcSink {
    /// Sets up the channels; connecting happens on first use, so an unreachable
    /// collector is a retryable export error, not a start-up failure.
    pub fn new(settings: &OtlpSettings) -> Result<GrpcSink, SinkError> {
        let channel = |endpoint: &Option<String>| {
            channel(
                endpoint.as_ref().unwrap_or(&settings.endpoint),
                settings.timeout,
            )
        };
        let mut logs = LogsServiceClient::new(channel(&settings.logs_endpoint)?)
            .max_decoding_message_size(MAX_RESPONSE);
        let mut traces = TraceServiceClient::new(channel(&settings.traces_endpoint)?)
            .max_decoding_message_size(MAX_RESPONSE);
        let mut metrics = MetricsServiceClient::new(channel(&settings.metrics_endpoint)?)
            .max_decoding_message_size(MAX_RESPONSE);
        if settings.gzip {
            logs = logs.send_compressed(CompressionEncoding::Gzip);
            traces = traces.send_compressed(CompressionEncoding::Gzip);
            metrics = metrics.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (key, value) in &settings.headers {
            let key = MetadataKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
                SinkError::Permanent(format!("OTLP header name `{key}` is not valid for gRPC"))
            })?;
            let value = MetadataValue::from_str(value).map_err(|_| {
                SinkError::Permanent(format!("OTLP header `{key}` has a value gRPC cannot carry"))
            })?;
            metadata.insert(key, value);
        }
        Ok(GrpcSink {
            endpoint: settings.endpoint.clone(),
            logs,
            traces,
            metrics,
            metadata,
            timeout: settings.timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends the signals not yet sent, concurrently.
    pub async fn export(
        &mut self,
        batch: &OtlpBatch,
        sent: &mut Sent,
    ) -> Result<Delivery, SinkError> {
        let (mut traces, mut logs, mut metrics) =
            (self.traces.clone(), self.logs.clone(), self.metrics.clone());
        let this: &GrpcSink = self;
        let (traces, logs, metrics) = tokio::join!(
            call(batch.traces.as_ref(), sent.traces, |r| async move {
                let response = traces.export(this.request(r)).await?.into_inner();
                Ok(response
                    .partial_success
                    .map(|p| (p.rejected_spans, p.error_message)))
            }),
            call(batch.logs.as_ref(), sent.logs, |r| async move {
                let response = logs.export(this.request(r)).await?.into_inner();
                Ok(response
                    .partial_success
                    .map(|p| (p.rejected_log_records, p.error_message)))
            }),
            call(batch.metrics.as_ref(), sent.metrics, |r| async move {
                let response = metrics.export(this.request(r)).await?.into_inner();
                Ok(response
                    .partial_success
                    .map(|p| (p.rejected_data_points, p.error_message)))
            }),
        );
        settle([
            (traces, &mut sent.traces),
            (logs, &mut sent.logs),
            (metrics, &mut sent.metrics),
        ])
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        request
    }
}

/// Sends one request unless it is absent or already taken.
async fn call<R, F, Fut>(request: Option<&R>, taken: bool, send: F) -> SignalOutcome
where
    R: Clone,
    F: FnOnce(R) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(i64, String)>, Status>>,
{
    let request = request.filter(|_| !taken)?.clone();
    Some(send(request).await.map_err(status_error))
}

fn channel(url: &str, timeout: Duration) -> Result<Channel, SinkError> {
    let invalid = |e: &dyn std::fmt::Display| {
        SinkError::Permanent(format!("OTLP endpoint `{url}` is not valid: {e}"))
    };
    let mut endpoint = Endpoint::from_str(url)
        .map_err(|e| invalid(&e))?
        .connect_timeout(timeout)
        .timeout(timeout)
        // HTTP/2's default 64 KiB windows stall on megabyte-sized export requests.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_webpki_roots())
            .map_err(|e| invalid(&e))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Sorts a gRPC status into retryable or not, per the OTLP specification.
fn status_error(status: Status) -> SinkError {
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    let retry_after = retry_info(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SinkError::Retryable {
            message,
            retry_after,
        },
        // Throttling is retryable only when the server says when to come back.
        Code::ResourceExhausted if retry_after.is_some() => SinkError::Retryable {
            message,
            retry_after,
        },
        // Credentials that no retry will fix: stop rather than skip batches.
        Code::Unauthenticated | Code::PermissionDenied => SinkError::Fatal(message),
        // A connection failure surfaces as Unknown with a transport error.
        Code::Unknown if status.message().contains("transport") => SinkError::Retryable {
            message,
            retry_after,
        },
        _ => SinkError::Permanent(message),
    }
}

/// `google.rpc.Status` and `google.rpc.RetryInfo`, just the fields read here.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types_any::Any>,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

mod prost_types_any {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
}

fn retry_info(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let any = status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        delay.seconds.max(0) as u64,
        delay.nanos.max(0) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_is_read_from_status_details() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            details: vec![prost_types_any::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
                value: info.encode_to_vec(),
            }],
        };
        let bytes = status.encode_to_vec();
        assert_eq!(retry_info(&bytes), Some(Duration::from_millis(2500)));
        let throttled = Status::with_details(Code::ResourceExhausted, "slow down", bytes.into());
        assert!(matches!(
            status_error(throttled),
            SinkError::Retryable {
                retry_after: Some(_),
                ..
            }
        ));
        let bad = Status::new(Code::InvalidArgument, "bad");
        assert!(matches!(status_error(bad), SinkError::Permanent(_)));
    }
}
