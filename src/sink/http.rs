//! OTLP over HTTP with protobuf bodies (`/v1/traces`, `/v1/logs`, `/v1/metrics`),
//! gzip, TLS by rustls, headers, and `Retry-After`.

use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::StatusCode;

use super::{settle, Delivery, OtlpSettings, Sent, SignalOutcome, SinkError};
use crate::signal::OtlpBatch;

/// Sends batches to an OTLP/HTTP endpoint.
pub struct HttpSink {
    endpoint: String,
    client: reqwest::Client,
    logs_url: String,
    traces_url: String,
    metrics_url: String,
    gzip: bool,
}

impl HttpSink {
    pub fn new(settings: &OtlpSettings) -> Result<HttpSink, SinkError> {
        let mut headers = HeaderMap::new();
        for (key, value) in &settings.headers {
            let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                SinkError::Permanent(format!("OTLP header name `{key}` is not valid"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                SinkError::Permanent(format!("OTLP header `{key}` has an invalid value"))
            })?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| SinkError::Permanent(format!("cannot set up the HTTP client: {e}")))?;
        let base = settings.endpoint.trim_end_matches('/');
        let url = |specific: &Option<String>, path: &str| {
            specific.clone().unwrap_or_else(|| format!("{base}/{path}"))
        };
        Ok(HttpSink {
            endpoint: settings.endpoint.clone(),
            client,
            logs_url: url(&settings.logs_endpoint, "v1/logs"),
            traces_url: url(&settings.traces_endpoint, "v1/traces"),
            metrics_url: url(&settings.metrics_endpoint, "v1/metrics"),
            gzip: settings.gzip,
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
        let traces = self.send(
            &self.traces_url,
            batch.traces.as_ref(),
            sent.traces,
            |body| {
                ExportTraceServiceResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|p| (p.rejected_spans, p.error_message))
            },
        );
        let logs = self.send(&self.logs_url, batch.logs.as_ref(), sent.logs, |body| {
            ExportLogsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_log_records, p.error_message))
        });
        let metrics = self.send(
            &self.metrics_url,
            batch.metrics.as_ref(),
            sent.metrics,
            |body| {
                ExportMetricsServiceResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|p| (p.rejected_data_points, p.error_message))
            },
        );
        let (traces, logs, metrics) = tokio::join!(traces, logs, metrics);
        settle([
            (traces, &mut sent.traces),
            (logs, &mut sent.logs),
            (metrics, &mut sent.metrics),
        ])
    }

    /// Posts one request unless it is absent or already sent; reads the
    /// response's partial success.
    async fn send<M: Message>(
        &self,
        url: &str,
        request: Option<&M>,
        already_sent: bool,
        partial: impl Fn(&[u8]) -> Option<(i64, String)>,
    ) -> SignalOutcome {
        let request = request.filter(|_| !already_sent)?;
        Some(
            self.post(url, request.encode_to_vec())
                .await
                .map(|body| partial(&body)),
        )
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<Vec<u8>, SinkError> {
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/x-protobuf");
        let body = if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::retryable(format!("POST {url}: {}", error_chain(&e))))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = format!(
            "POST {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        );
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // Credentials that no retry will fix: stop rather than skip batches.
            return Err(SinkError::Fatal(message));
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            Err(SinkError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(SinkError::Permanent(message))
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Protocol, Sent};
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest,
    };
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// Answers each request on `listener` with the next canned response, after
    /// reading the request body; returns the requests' headers.
    fn serve(
        listener: TcpListener,
        responses: Vec<Vec<u8>>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for response in responses {
                let (stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("read header");
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().expect("length");
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                seen.push(head);
                let mut stream = reader.into_inner();
                stream.write_all(&response).expect("respond");
            }
            seen
        })
    }

    #[tokio::test]
    async fn honours_retry_after_and_reports_partial_success() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let partial = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "too old".to_owned(),
            }),
        }
        .encode_to_vec();
        let mut ok = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            partial.len()
        )
        .into_bytes();
        ok.extend_from_slice(&partial);
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec();
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad"
            .to_vec();
        let server = serve(listener, vec![busy, ok, bad]);
        let settings = OtlpSettings {
            protocol: Protocol::HttpProtobuf,
            endpoint: format!("http://{address}"),
            logs_endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            headers: vec![("x-team".to_owned(), "blue".to_owned())],
            gzip: true,
            timeout: Duration::from_secs(5),
        };
        let mut sink = HttpSink::new(&settings).expect("sink");
        let batch = OtlpBatch {
            logs: Some(ExportLogsServiceRequest::default()),
            ..OtlpBatch::default()
        };
        let mut sent = Sent::default();
        match sink.export(&batch, &mut sent).await {
            Err(SinkError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
        assert!(!sent.logs);
        let delivery = sink.export(&batch, &mut sent).await.expect("delivered");
        assert_eq!(delivery.rejected, 2);
        assert_eq!(delivery.message.as_deref(), Some("too old"));
        assert!(sent.logs);
        let mut fresh = Sent::default();
        assert!(matches!(
            sink.export(&batch, &mut fresh).await,
            Err(SinkError::Permanent(_))
        ));
        let heads = server.join().expect("server");
        assert!(heads[0].starts_with("POST /v1/logs "));
        assert!(heads[0]
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"));
        assert!(heads[0].to_ascii_lowercase().contains("x-team: blue"));
    }
}
