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

use super::{Delivery, OtlpSettings, SinkError};
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

    pub async fn export(&mut self, batch: &OtlpBatch) -> Result<Delivery, SinkError> {
        let mut delivery = Delivery::default();
        if let Some(request) = &batch.traces {
            let body = self.post(&self.traces_url, request.encode_to_vec()).await?;
            if let Some(p) = ExportTraceServiceResponse::decode(body.as_slice())
                .ok()
                .and_then(|r| r.partial_success)
            {
                delivery.add_partial(p.rejected_spans, &p.error_message);
            }
        }
        if let Some(request) = &batch.logs {
            let body = self.post(&self.logs_url, request.encode_to_vec()).await?;
            if let Some(p) = ExportLogsServiceResponse::decode(body.as_slice())
                .ok()
                .and_then(|r| r.partial_success)
            {
                delivery.add_partial(p.rejected_log_records, &p.error_message);
            }
        }
        if let Some(request) = &batch.metrics {
            let body = self
                .post(&self.metrics_url, request.encode_to_vec())
                .await?;
            if let Some(p) = ExportMetricsServiceResponse::decode(body.as_slice())
                .ok()
                .and_then(|r| r.partial_success)
            {
                delivery.add_partial(p.rejected_data_points, &p.error_message);
            }
        }
        Ok(delivery)
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
