//! A fake vendor for fault injection: a minimal HTTP/1.1 server on loopback that answers
//! each request by a deterministic plan: success, 500, 503, 429 with Retry-After, 400, a
//! response slower than the client's timeout, or a connection reset. It records its side
//! effects by idempotency key (`webhook-id`), as a vendor that dedupes would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Shares of each answer, in percent; the rest succeed.
#[derive(Clone)]
pub struct Plan {
    pub seed: u64,
    pub server_error: u32,
    pub throttled: u32,
    pub slow: u32,
    pub reset: u32,
    pub bad_request: u32,
    /// Every request fails with 503 until this clock reads `outage_until_ms` (an outage).
    pub clock: Arc<dyn testrelay_domain::ports::Clock>,
    pub outage_until_ms: u64,
    /// How long a slow answer takes (longer than the client's timeout).
    pub slow_by: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    Ok,
    ServerError,
    Throttled,
    Slow,
    Reset,
    BadRequest,
}

/// splitmix64: a fixed, well-mixed sequence for a seed.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Plan {
    fn answer(&self, n: u64) -> Answer {
        if self.clock.now_ms() < self.outage_until_ms {
            return Answer::ServerError;
        }
        let roll = (mix(self.seed, n) % 100) as u32;
        let mut edge = 0;
        for (share, answer) in [
            (self.server_error, Answer::ServerError),
            (self.throttled, Answer::Throttled),
            (self.slow, Answer::Slow),
            (self.reset, Answer::Reset),
            (self.bad_request, Answer::BadRequest),
        ] {
            edge += share;
            if roll < edge {
                return answer;
            }
        }
        Answer::Ok
    }
}

#[derive(Default, Clone)]
pub struct Record {
    /// Side effects by idempotency key: how many times a request with that key was
    /// processed. A deduping vendor processes a key once and answers repeats with success.
    pub effects: HashMap<String, u32>,
    /// Repeats of an already processed key (duplicate sends, answered 204 and ignored).
    pub replays: u64,
    pub answers: HashMap<Answer, u64>,
}

pub struct FakeVendor {
    pub url: String,
    pub record: Arc<Mutex<Record>>,
}

impl FakeVendor {
    pub async fn start(plan: Plan) -> FakeVendor {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let record = Arc::new(Mutex::new(Record::default()));
        let counter = Arc::new(AtomicU64::new(0));
        let rec = record.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, counter, plan) = (rec.clone(), counter.clone(), plan.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, plan, rec, counter).await;
                });
            }
        });
        FakeVendor { url, record }
    }
}

/// Reads one request head and body; `None` when the peer closed the connection.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + length);
            return Ok(Some(head));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(
    mut stream: TcpStream,
    plan: Plan,
    record: Arc<Mutex<Record>>,
    counter: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut stream, &mut buf).await? {
        let key = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("webhook-id")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let mut answer = plan.answer(counter.fetch_add(1, Ordering::SeqCst));
        {
            let mut r = record.lock().unwrap();
            if r.effects.contains_key(&key) && answer != Answer::Reset {
                // Already processed: a deduping vendor acknowledges the repeat.
                r.replays += 1;
                answer = Answer::Ok;
            } else if matches!(answer, Answer::Ok | Answer::Slow) {
                // A slow answer is processed, then answered too late: the client cannot know.
                *r.effects.entry(key).or_default() += 1;
            }
            *r.answers.entry(answer).or_default() += 1;
        }
        let response: &[u8] = match answer {
            Answer::Ok => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            Answer::ServerError => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            Answer::Throttled => {
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n"
            }
            Answer::BadRequest => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            Answer::Slow => {
                tokio::time::sleep(plan.slow_by).await;
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
            }
            Answer::Reset => {
                stream.set_zero_linger()?;
                return Ok(());
            }
        };
        stream.write_all(response).await?;
    }
    Ok(())
}
