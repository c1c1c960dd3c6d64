//! The response body a plugin reads: cut off at the request's deadline and at the size limit,
//! whichever comes first, so a slow or endless server cannot hold a call past its deadline
//! nor fill the host's memory.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, WasiBody};

/// `response` with its body guarded by `max` bytes and `deadline`.
pub(super) fn guard(
    response: http::Response<WasiBody>,
    max: u64,
    deadline: Instant,
) -> http::Response<WasiBody> {
    response.map(|inner| {
        Guarded {
            inner,
            left: max,
            max,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            done: false,
        }
        .boxed_unsync()
    })
}

/// A body that fails once it passes `max` bytes or its deadline.
struct Guarded {
    inner: WasiBody,
    left: u64,
    max: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.left {
                        self.done = true;
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max)))));
                    }
                    self.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
