//! A report body as the parsers get it: `Content-Encoding: gzip` undone within the inflated
//! cap, and counted against the process-wide in-flight budget.
//!
//! Policy: the report bytes held at once, across all requests, never pass
//! `server.max_inflight_bytes`. A request reserves its body as it is received (the HTTP edge
//! grows the reservation chunk by chunk), then what it inflates (a gzip body step by step, so
//! a bomb stops at the cap without ever holding more than its reservation), and keeps the
//! reservation until it is answered. When the budget is spent, the request is refused at once
//! with 503 and `Retry-After`: the process never queues or grows.

use crate::error::ApiError;
use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB (a semaphore's permits per call are a `u32`).
const UNIT: usize = 1024;
/// A gzip buffer grows by at least this many bytes, and is read into a step at a time.
const STEP: usize = 256 * 1024;
/// What a refused request is told to wait.
pub const RETRY_AFTER_S: u32 = 2;

/// The in-flight budget, shared by every request of the process.
#[derive(Debug, Clone)]
pub struct Inflight {
    units: Arc<Semaphore>,
    bytes: usize,
}

/// A request's reservation, released when dropped. The default reserves nothing.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl Inflight {
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Inflight {
            units: Arc::new(Semaphore::new(units)),
            bytes,
        }
    }

    /// Grows `r` to cover `bytes` in all, or refuses with 503 when the budget is spent.
    pub fn grow(&self, r: &mut Reservation, bytes: usize) -> Result<(), ApiError> {
        let want = bytes.div_ceil(UNIT);
        if want <= r.units {
            return Ok(());
        }
        let more = u32::try_from(want - r.units).map_err(|_| self.busy())?;
        let permit = self
            .units
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| self.busy())?;
        match &mut r.permit {
            Some(p) => p.merge(permit),
            None => r.permit = Some(permit),
        }
        r.units = want;
        Ok(())
    }

    fn busy(&self) -> ApiError {
        ApiError::busy(
            format!(
                "testrelay is parsing as many reports as its memory allows (server.max_inflight_bytes = {} bytes); nothing was accepted, retry in {RETRY_AFTER_S} s",
                self.bytes
            ),
            RETRY_AFTER_S,
        )
    }

    /// Undoes `Content-Encoding: gzip` (or a gzip body sent without the header), refusing to
    /// inflate past `cap` bytes (413) and to grow `reservation` past the budget (503): it
    /// covers the body and, for gzip, the inflated buffer too (both are held while it
    /// inflates). The body is shared, not copied, when it is not compressed.
    pub fn decode(
        &self,
        body: &Bytes,
        encoding: Option<&str>,
        cap: usize,
        reservation: &mut Reservation,
    ) -> Result<Bytes, ApiError> {
        let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
        let gzipped = match encoding.as_deref() {
            None | Some("") | Some("identity") => body.starts_with(&[0x1f, 0x8b]),
            Some("gzip") | Some("x-gzip") => true,
            Some(other) => {
                return Err(ApiError::unsupported_encoding(format!(
                    "Content-Encoding {other:?} is not supported; send gzip or no encoding"
                )));
            }
        };
        let wire = body.len();
        self.grow(reservation, wire)?;
        if !gzipped {
            return Ok(body.clone());
        }
        let too_large = || {
            ApiError::too_large(format!(
                "the report is larger than {cap} bytes after decompression"
            ))
        };
        // gzip's trailer says the inflated size (mod 4 GiB) of its last member: sized by it,
        // an honest body inflates without the buffer ever doubling. A lie only costs growth.
        let hint = body
            .len()
            .checked_sub(4)
            .map(|at| u32::from_le_bytes(body[at..].try_into().expect("4 bytes")) as usize)
            .unwrap_or(0)
            .min(cap + 1);
        self.grow(reservation, wire + hint)?;
        let mut out: Vec<u8> = Vec::with_capacity(hint);
        let mut decoder = flate2::read::MultiGzDecoder::new(&body[..]);
        let corrupt =
            |e: std::io::Error| ApiError::bad_request(format!("the gzip body is corrupt: {e}"));
        loop {
            if out.len() == out.capacity() {
                // Full: a small probe first, so that a body whose hint was right ends here
                // without the buffer doubling.
                let mut probe = [0u8; 64];
                let n = decoder.read(&mut probe).map_err(corrupt)?;
                if n == 0 {
                    break;
                }
                let grown = (2 * out.capacity())
                    .max(out.len() + STEP)
                    .min(cap + 1 + probe.len());
                self.grow(reservation, wire + grown)?;
                out.reserve_exact(grown - out.len());
                out.extend_from_slice(&probe[..n]);
            } else {
                // Read into the spare capacity, a step at a time (only a step is zeroed).
                let start = out.len();
                out.resize((start + STEP).min(out.capacity()), 0);
                let n = decoder.read(&mut out[start..]).map_err(corrupt)?;
                out.truncate(start + n);
                if n == 0 {
                    break;
                }
            }
            if out.len() > cap {
                return Err(too_large());
            }
        }
        out.shrink_to_fit();
        Ok(Bytes::from(out))
    }
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.units * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap().into()
    }

    fn roomy() -> Inflight {
        Inflight::new(64 << 20)
    }

    #[test]
    fn decodes_gzip_with_and_without_header() {
        let z = gzip(b"<testsuite/>");
        let decode = |b: &Bytes, e| roomy().decode(b, e, 100, &mut Reservation::default());
        assert_eq!(&decode(&z, Some("gzip")).unwrap()[..], b"<testsuite/>");
        assert_eq!(&decode(&z, None).unwrap()[..], b"<testsuite/>");
        let plain = Bytes::from_static(b"plain");
        let shared = decode(&plain, None).unwrap();
        assert_eq!(shared.as_ptr(), plain.as_ptr(), "not copied");
    }

    #[test]
    fn refuses_bombs_corruption_and_unknown_encodings() {
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 50_000);
        let status = |b: &Bytes, e| {
            let mut r = Reservation::default();
            roomy().decode(b, e, 1_000_000, &mut r).unwrap_err().status
        };
        assert_eq!(status(&bomb, Some("gzip")), 413);
        assert_eq!(
            status(&Bytes::from_static(b"\x1f\x8bjunk"), Some("gzip")),
            400
        );
        assert_eq!(status(&Bytes::from_static(b"x"), Some("br")), 415);
    }

    #[test]
    fn reservations_add_up_to_the_budget_and_are_released() {
        let inflight = Inflight::new(3 << 20);
        let two_mib = Bytes::from(vec![b'a'; 2 << 20]);
        let mut first = Reservation::default();
        inflight
            .decode(&two_mib, None, 64 << 20, &mut first)
            .unwrap();
        assert_eq!(first.bytes(), 2 << 20);
        let busy = inflight
            .decode(&two_mib, None, 64 << 20, &mut Reservation::default())
            .unwrap_err();
        assert_eq!((busy.status, busy.retry_after), (503, Some(RETRY_AFTER_S)));
        // A gzip body is refused part-way through inflating, not after.
        let zipped = gzip(&two_mib);
        let mut partial = Reservation::default();
        let busy = inflight.decode(&zipped, None, 64 << 20, &mut partial);
        assert_eq!(busy.unwrap_err().status, 503);
        drop((first, partial));
        let mut second = Reservation::default();
        let body = inflight
            .decode(&zipped, None, 64 << 20, &mut second)
            .unwrap();
        assert_eq!(body.len(), 2 << 20);
        assert!(second.bytes() <= 3 << 20);
        drop(second);
        // What the edge reserved for the body is counted once.
        let mut edge = Reservation::default();
        inflight.grow(&mut edge, two_mib.len()).unwrap();
        inflight
            .decode(&two_mib, None, 64 << 20, &mut edge)
            .unwrap();
        assert_eq!(edge.bytes(), 2 << 20);
    }
}
