//! The OTLP endpoints Claude Code sends to: gRPC (with gzip) and HTTP
//! (`/v1/logs`, `/v1/traces`, `/v1/metrics`; protobuf or JSON; gzip).
//!
//! A request is acknowledged once it is queued for the hold stage. When the
//! queue stays full (the destination is down and everything behind it is
//! full), the sender is told to retry later: gRPC `UNAVAILABLE`, HTTP 503 with
//! `Retry-After`, as the OTLP specification asks exporters to honour.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;

use super::{Native, ReceiverStats};

/// How long a request may wait for room in the queue before the sender is told
/// to retry.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Where requests go, shared by both servers.
#[derive(Clone)]
pub struct Intake {
    sender: mpsc::Sender<Native>,
    stats: Arc<ReceiverStats>,
    /// The largest request body taken, compressed or not.
    max_bytes: usize,
}

/// The queue stayed full.
struct Busy;

impl Intake {
    pub fn new(
        sender: mpsc::Sender<Native>,
        stats: Arc<ReceiverStats>,
        max_bytes: usize,
    ) -> Intake {
        Intake {
            sender,
            stats,
            max_bytes,
        }
    }

    async fn submit(&self, request: Native) -> Result<(), Busy> {
        let records = request.records();
        match tokio::time::timeout(QUEUE_WAIT, self.sender.send(request)).await {
            Ok(Ok(())) => {
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.records.fetch_add(records, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}

/// Resolves once `stop` is set.
pub async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves OTLP/gRPC on `listener` until `stop`.
pub async fn serve_grpc(
    listener: TcpListener,
    intake: Intake,
    stop: Arc<AtomicBool>,
) -> Result<(), tonic::transport::Error> {
    let limit = intake.max_bytes;
    let logs = LogsServiceServer::new(intake.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let traces = TraceServiceServer::new(intake.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let metrics = MetricsServiceServer::new(intake)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .add_service(logs)
        .add_service(traces)
        .add_service(metrics)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stopped(stop),
        )
        .await
}

fn busy_status() -> tonic::Status {
    tonic::Status::unavailable("ccotel's queue is full (its destination is slow or down); retry")
}

#[tonic::async_trait]
impl LogsService for Intake {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.submit(Native::Logs(request.into_inner()))
            .await
            .map_err(|Busy| busy_status())?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Intake {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.submit(Native::Traces(request.into_inner()))
            .await
            .map_err(|Busy| busy_status())?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Intake {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.submit(Native::Metrics(request.into_inner()))
            .await
            .map_err(|Busy| busy_status())?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves OTLP/HTTP on `listener` until `stop`.
pub async fn serve_http(
    listener: TcpListener,
    intake: Intake,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let limit = intake.max_bytes;
    let app = axum::Router::new()
        .route("/v1/logs", post(http_logs))
        .route("/v1/traces", post(http_traces))
        .route("/v1/metrics", post(http_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(intake);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
}

async fn http_logs(State(intake): State<Intake>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(
        &intake,
        &headers,
        &body,
        Native::Logs,
        ExportLogsServiceResponse::default(),
    )
    .await
}

async fn http_traces(State(intake): State<Intake>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(
        &intake,
        &headers,
        &body,
        Native::Traces,
        ExportTraceServiceResponse::default(),
    )
    .await
}

async fn http_metrics(State(intake): State<Intake>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(
        &intake,
        &headers,
        &body,
        Native::Metrics,
        ExportMetricsServiceResponse::default(),
    )
    .await
}

/// The two encodings OTLP/HTTP allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Encoding> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/x-protobuf");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        })
    }

    fn decode<T: Message + Default + DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Encoding::Protobuf => T::decode(bytes).map_err(|e| format!("invalid protobuf: {e}")),
            Encoding::Json => {
                serde_json::from_slice(bytes).map_err(|e| format!("invalid OTLP JSON: {e}"))
            }
        }
    }

    fn encode<T: Message + Serialize>(self, message: &T) -> Vec<u8> {
        match self {
            Encoding::Protobuf => message.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP error responses carry.
#[derive(Clone, PartialEq, Message, Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error_response(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => 3, // INVALID_ARGUMENT
        StatusCode::SERVICE_UNAVAILABLE => 14,                        // UNAVAILABLE
        _ => 2,                                                       // UNKNOWN
    };
    let body = encoding.encode(&RpcStatus { code, message });
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, encoding.content_type());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn http_export<T, R>(
    intake: &Intake,
    headers: &HeaderMap,
    body: &[u8],
    wrap: fn(T) -> Native,
    reply: R,
) -> Response
where
    T: Message + Default + DeserializeOwned,
    R: Message + Serialize,
{
    let Some(encoding) = Encoding::of(headers) else {
        let message = "content type must be application/x-protobuf or application/json".to_owned();
        return error_response(
            Encoding::Protobuf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message,
        );
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let inflated;
    let bytes = if gzip {
        match gunzip(body, intake.max_bytes) {
            Ok(bytes) => {
                inflated = bytes;
                &inflated[..]
            }
            Err((status, message)) => return error_response(encoding, status, message),
        }
    } else {
        body
    };
    let request = match encoding.decode::<T>(bytes) {
        Ok(request) => request,
        Err(message) => {
            intake.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("receiver: {message}");
            return error_response(encoding, StatusCode::BAD_REQUEST, message);
        }
    };
    match intake.submit(wrap(request)).await {
        Ok(()) => {
            let mut response = (StatusCode::OK, encoding.encode(&reply)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, encoding.content_type());
            response
        }
        Err(Busy) => error_response(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            "ccotel's queue is full (its destination is slow or down); retry".to_owned(),
        ),
    }
}

/// Inflates a gzip body, refusing one that grows past `max` bytes.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max + 1));
    let read = flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Err(error) => Err((
            StatusCode::BAD_REQUEST,
            format!("invalid gzip body: {error}"),
        )),
        Ok(n) if n > max => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body inflates past the {max}-byte limit"),
        )),
        Ok(_) => Ok(out),
    }
}

/// Binds a listening socket, naming the setting in the error.
pub async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("{setting} `{addr}`: cannot listen: {error}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn content_types_choose_the_encoding() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::of(&headers), Some(Encoding::Protobuf));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(Encoding::of(&headers), Some(Encoding::Json));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(Encoding::of(&headers), None);
    }

    #[test]
    fn gzip_bodies_inflate_within_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&[b'a'; 10_000]).expect("compress");
        let body = encoder.finish().expect("finish");
        assert_eq!(gunzip(&body, 10_000).map(|b| b.len()), Ok(10_000));
        let (status, _) = gunzip(&body, 9_999).expect_err("over the limit");
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _) = gunzip(b"not gzip", 100).expect_err("not gzip");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn otlp_json_as_the_js_sdk_writes_it_decodes() {
        // intValue as a number and times as strings, as the JavaScript SDK sends.
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[]},"scopeLogs":[{"scope":{"name":"com.anthropic.claude_code.events"},"logRecords":[{"timeUnixNano":"1772359200123000000","body":{"stringValue":"claude_code.user_prompt"},"attributes":[{"key":"event.sequence","value":{"intValue":3}}]}]}]}]}"#;
        let request: ExportLogsServiceRequest = Encoding::Json.decode(body).expect("decodes");
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_772_359_200_123_000_000);
        assert_eq!(record.attributes[0].key, "event.sequence");
    }
}
