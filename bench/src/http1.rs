//! A small HTTP/1.1 client for the load generator: keep-alive connections to one server, each
//! request written in one `write`, each answer read by its `Content-Length`.
//!
//! The generator shares the machine's two cores with the server it measures, so every microsecond
//! it spends per request is taken from the server. A general client (connection pool with
//! timers, header maps, body streams) cost about 40 µs of CPU per request here; this one does
//! only what talking to our own server needs, and refuses anything else loudly (chunked answers,
//! oversized heads) instead of guessing.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The whole body.
    pub(crate) body: Bytes,
}

/// Keep-alive connections to one `http://host:port` server.
#[derive(Debug)]
pub(crate) struct Http1 {
    address: SocketAddr,
    /// The `Host` header.
    authority: String,
    idle: Mutex<Vec<Connection>>,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    input: BytesMut,
    /// The request being written (reused, so a request costs no allocation).
    output: Vec<u8>,
}

impl Http1 {
    /// A client for `base` (`http://<ip or name>:<port>`, no path). Names are resolved once.
    ///
    /// # Errors
    ///
    /// A description of what is wrong with `base`, or why it does not resolve.
    pub(crate) async fn new(base: &str) -> Result<Self, String> {
        let authority = base
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err("give the server's base URL, without a path".into());
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let address = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("resolving {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{with_port} resolves to no address"))?;
        Ok(Http1 {
            address,
            authority: authority.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Opens connections until `count` are idle, one after another, so a timed phase does not
    /// begin with a burst of handshakes.
    ///
    /// # Errors
    ///
    /// The first connection error.
    pub(crate) async fn open(&self, count: usize) -> io::Result<()> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        for _ in idle..count {
            let connection = self.connect().await?;
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    ///
    /// A kept-alive connection the server has closed meanwhile fails before any answer byte;
    /// then the request is sent once more on a new connection.
    ///
    /// # Errors
    ///
    /// Connection, read and write errors, and answers this client does not read (chunked,
    /// without `Content-Length`, too large, malformed).
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<Answer> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let was_reused = reused.is_some();
        let mut connection = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        connection.prepare(method, &self.authority, path, content_type, body);
        let mut result = connection.exchange().await;
        if was_reused && matches!(&result, Err(Failure::BeforeAnswer(_))) {
            connection = self.connect().await?;
            connection.prepare(method, &self.authority, path, content_type, body);
            result = connection.exchange().await;
        }
        match result {
            Ok((answer, keep_alive)) => {
                if keep_alive {
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(connection);
                }
                Ok(answer)
            }
            Err(Failure::BeforeAnswer(e) | Failure::DuringAnswer(e)) => Err(e),
        }
    }

    async fn connect(&self) -> io::Result<Connection> {
        let stream = TcpStream::connect(self.address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            input: BytesMut::with_capacity(8 * 1024),
            output: Vec::with_capacity(4 * 1024),
        })
    }
}

/// Where an exchange failed: only a failure before any answer byte may be retried.
enum Failure {
    BeforeAnswer(io::Error),
    DuringAnswer(io::Error),
}

fn malformed(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Connection {
    fn prepare(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        use std::io::Write as _;
        self.output.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.output,
            "{method} {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(content_type) = content_type {
            let _ = write!(self.output, "content-type: {content_type}\r\n");
        }
        self.output.extend_from_slice(b"\r\n");
        self.output.extend_from_slice(body);
    }

    /// Writes the prepared request and reads one answer; `true` if the connection stays open.
    async fn exchange(&mut self) -> Result<(Answer, bool), Failure> {
        self.input.clear();
        self.stream
            .write_all(&self.output)
            .await
            .map_err(Failure::BeforeAnswer)?;
        let head_end = loop {
            if let Some(end) = find(&self.input, b"\r\n\r\n") {
                break end + 4;
            }
            if self.input.len() > MAX_HEAD {
                return Err(Failure::DuringAnswer(malformed(format!(
                    "response head longer than {MAX_HEAD} bytes"
                ))));
            }
            let read = self
                .stream
                .read_buf(&mut self.input)
                .await
                .map_err(|e| self.failure(e))?;
            if read == 0 {
                return Err(self.failure(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer was complete",
                )));
            }
        };
        let head = parse_head(self.input.get(..head_end).unwrap_or_default())
            .map_err(Failure::DuringAnswer)?;
        let total = head_end + head.content_length;
        while self.input.len() < total {
            let read = self
                .stream
                .read_buf(&mut self.input)
                .await
                .map_err(Failure::DuringAnswer)?;
            if read == 0 {
                return Err(Failure::DuringAnswer(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the response body",
                )));
            }
        }
        let mut message = self.input.split_to(total);
        let body = message.split_off(head_end).freeze();
        Ok((
            Answer {
                status: head.status,
                body,
            },
            head.keep_alive && self.input.is_empty(),
        ))
    }

    fn failure(&self, error: io::Error) -> Failure {
        if self.input.is_empty() {
            Failure::BeforeAnswer(error)
        } else {
            Failure::DuringAnswer(error)
        }
    }
}

struct Head {
    status: u16,
    content_length: usize,
    keep_alive: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses `HTTP/1.1 <status> ...` and the headers this client needs.
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| malformed("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(malformed(format!(
            "not an HTTP/1 status line: {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| malformed(format!("no status code in {status_line:?}")))?;
    let mut content_length = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("header line without a colon: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .map_err(|_| malformed(format!("bad content-length {value:?}")))?;
            if length > MAX_BODY {
                return Err(malformed(format!("response body of {length} bytes")));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(malformed(format!(
                "transfer-encoding {value:?} is not supported by this client"
            )));
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    // 1xx, 204 and 304 answers have no body; our server sends none of them to these requests.
    let content_length =
        content_length.ok_or_else(|| malformed("answer without content-length"))?;
    Ok(Head {
        status,
        content_length,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn heads_are_parsed_or_refused() {
        let head =
            parse_head(b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\nx: y\r\n\r\n").unwrap();
        assert_eq!(
            (head.status, head.content_length, head.keep_alive),
            (201, 12, true)
        );
        let head =
            parse_head(b"HTTP/1.1 409 Conflict\r\ncontent-length:0\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.keep_alive),
            (409, 0, false)
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/2 200\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 abc OK\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\ncontent-length: 1\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// A server on loopback that answers each request it reads with `answers[i]`, then closes.
    async fn serve(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Each test request has a body of 3 bytes after its head.
                while find(&request, b"\r\n\r\n").is_none_or(|end| request.len() < end + 7) {
                    let n = stream.read(&mut buffer).await.unwrap();
                    assert!(n > 0, "client closed early");
                    request.extend_from_slice(&buffer[..n]);
                }
                seen.push(request);
                // Answer in two writes, so the client must read the body separately.
                let (first, second) = answer.split_at(answer.len() / 2);
                stream.write_all(first).await.unwrap();
                stream.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                stream.write_all(second).await.unwrap();
            }
            seen
        });
        (base, task)
    }

    #[tokio::test]
    async fn requests_share_a_connection_and_answers_are_read_whole() {
        let (base, server) = serve(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\nno",
        ])
        .await;
        let client = Http1::new(&base).await.unwrap();
        let first = client
            .request(
                "POST",
                "/api/v2/log/entries",
                Some("application/json"),
                b"abc",
            )
            .await
            .unwrap();
        assert_eq!((first.status, &first.body[..]), (201, &b"hello"[..]));
        let second = client.request("POST", "/x", None, b"def").await.unwrap();
        assert_eq!((second.status, &second.body[..]), (409, &b"no"[..]));
        let seen = server.await.unwrap();
        let first_request = String::from_utf8(seen[0].clone()).unwrap();
        assert!(first_request.starts_with("POST /api/v2/log/entries HTTP/1.1\r\n"));
        assert!(first_request.contains("content-length: 3\r\n"));
        assert!(first_request.contains("content-type: application/json\r\n"));
        assert!(first_request.ends_with("\r\n\r\nabc"));
        assert!(
            String::from_utf8(seen[1].clone())
                .unwrap()
                .ends_with("\r\n\r\ndef")
        );
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_an_error() {
        let (base, server) = serve(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 50\r\n\r\nshort",
        ])
        .await;
        let client = Http1::new(&base).await.unwrap();
        let result = client.request("POST", "/", None, b"abc").await;
        server.await.unwrap();
        assert!(result.is_err(), "{result:?}");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_the_server_closed_is_replaced_once() {
        // The server answers one request per connection, then closes it (as a server does with
        // an idle keep-alive connection).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            for body in [&b"one"[..], b"two"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while find(&request, b"\r\n\r\n").is_none_or(|end| request.len() < end + 3) {
                    let n = stream.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..n]);
                }
                let answer = format!(
                    "HTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                stream.write_all(body).await.unwrap();
                stream.shutdown().await.unwrap();
            }
            accepted
        });
        let client = Http1::new(&base).await.unwrap();
        let first = client.request("POST", "/", None, b"abc").await.unwrap();
        assert_eq!(&first.body[..], b"one");
        // Let the close reach the client before the connection is reused.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = client.request("POST", "/", None, b"def").await.unwrap();
        assert_eq!(&second.body[..], b"two");
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn bad_base_urls_are_refused() {
        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://127.0.0.1:1/api",
            "http://",
        ] {
            assert!(Http1::new(bad).await.is_err(), "{bad}");
        }
    }
}
