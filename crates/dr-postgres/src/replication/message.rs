//! Backend messages: framing and the few bodies a replication client reads.
//!
//! postgres-protocol's backend parser does not know CopyBothResponse (`W`), and
//! its bodies hand out fallible iterators; the handful of messages a walsender
//! sends are simple enough to decode here, zero-copy, from one frame at a time.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ServerError;

/// The largest backend message accepted. WAL arrives in CopyData messages of at
/// most 128 KiB and base backup data in 32 KiB ones; a timeline history file
/// is small. Anything beyond this is a confused or hostile peer.
pub(crate) const MAX_MESSAGE_LEN: usize = 64 << 20;

pub(crate) const AUTHENTICATION: u8 = b'R';
pub(crate) const BACKEND_KEY_DATA: u8 = b'K';
pub(crate) const COMMAND_COMPLETE: u8 = b'C';
pub(crate) const COPY_BOTH_RESPONSE: u8 = b'W';
pub(crate) const COPY_DATA: u8 = b'd';
pub(crate) const COPY_DONE: u8 = b'c';
pub(crate) const COPY_IN_RESPONSE: u8 = b'G';
pub(crate) const COPY_OUT_RESPONSE: u8 = b'H';
pub(crate) const DATA_ROW: u8 = b'D';
pub(crate) const EMPTY_QUERY_RESPONSE: u8 = b'I';
pub(crate) const ERROR_RESPONSE: u8 = b'E';
pub(crate) const NOTICE_RESPONSE: u8 = b'N';
pub(crate) const PARAMETER_STATUS: u8 = b'S';
pub(crate) const READY_FOR_QUERY: u8 = b'Z';
pub(crate) const ROW_DESCRIPTION: u8 = b'T';

/// One backend message: its type byte and its body (without the length word).
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) tag: u8,
    pub(crate) body: Bytes,
}

impl Frame {
    /// A name for error messages.
    pub(crate) fn name(&self) -> &'static str {
        tag_name(self.tag)
    }
}

/// The protocol's name for a backend message type.
pub(crate) fn tag_name(tag: u8) -> &'static str {
    match tag {
        AUTHENTICATION => "Authentication",
        BACKEND_KEY_DATA => "BackendKeyData",
        COMMAND_COMPLETE => "CommandComplete",
        COPY_BOTH_RESPONSE => "CopyBothResponse",
        COPY_DATA => "CopyData",
        COPY_DONE => "CopyDone",
        COPY_IN_RESPONSE => "CopyInResponse",
        COPY_OUT_RESPONSE => "CopyOutResponse",
        DATA_ROW => "DataRow",
        EMPTY_QUERY_RESPONSE => "EmptyQueryResponse",
        ERROR_RESPONSE => "ErrorResponse",
        NOTICE_RESPONSE => "NoticeResponse",
        PARAMETER_STATUS => "ParameterStatus",
        READY_FOR_QUERY => "ReadyForQuery",
        ROW_DESCRIPTION => "RowDescription",
        b'A' => "NotificationResponse",
        b'n' => "NoData",
        b'1' => "ParseComplete",
        b'2' => "BindComplete",
        b'3' => "CloseComplete",
        b's' => "PortalSuspended",
        b't' => "ParameterDescription",
        b'v' => "NegotiateProtocolVersion",
        _ => "an unknown message",
    }
}

/// A malformed message; the text says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

impl Malformed {
    fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// Splits one whole message off the front of `buf`, or returns `None` if more
/// bytes are needed.
pub(crate) fn split_frame(buf: &mut BytesMut) -> Result<Option<Frame>, Malformed> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(Malformed::new(format!(
            "{} has length {len}, less than its own length word",
            tag_name(tag)
        )));
    }
    if len > MAX_MESSAGE_LEN {
        return Err(Malformed::new(format!(
            "{} of {len} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit",
            tag_name(tag)
        )));
    }
    if buf.len() < len + 1 {
        // Room for the rest, so the next read can take it in one go.
        buf.reserve(len + 1 - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(len + 1);
    frame.advance(5);
    Ok(Some(Frame {
        tag,
        body: frame.freeze(),
    }))
}

/// A cursor over a message body.
pub(crate) struct Reader {
    buf: Bytes,
    what: &'static str,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, what: &'static str) -> Self {
        Self { buf, what }
    }

    fn short(&self, needed: usize) -> Malformed {
        Malformed::new(format!(
            "{} is truncated: {needed} more bytes expected, {} left",
            self.what,
            self.buf.len()
        ))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        if self.buf.is_empty() {
            return Err(self.short(1));
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn i16(&mut self) -> Result<i16, Malformed> {
        if self.buf.len() < 2 {
            return Err(self.short(2));
        }
        Ok(self.buf.get_i16())
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Malformed> {
        if self.buf.len() < 4 {
            return Err(self.short(4));
        }
        Ok(self.buf.get_i32())
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        if self.buf.len() < 8 {
            return Err(self.short(8));
        }
        Ok(self.buf.get_u64())
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Malformed> {
        if self.buf.len() < 8 {
            return Err(self.short(8));
        }
        Ok(self.buf.get_i64())
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, Malformed> {
        if self.buf.len() < n {
            return Err(self.short(n));
        }
        Ok(self.buf.split_to(n))
    }

    /// A NUL-terminated string, without its NUL.
    pub(crate) fn cstr(&mut self) -> Result<Bytes, Malformed> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(Malformed::new(format!(
                "{} has a string without its terminating NUL",
                self.what
            )));
        };
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn string(&mut self) -> Result<String, Malformed> {
        let what = self.what;
        let raw = self.cstr()?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| Malformed::new(format!("{what} has a string that is not UTF-8")))
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if bytes are left over.
    pub(crate) fn finish(self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed::new(format!(
                "{} has {} unexpected trailing bytes",
                self.what,
                self.buf.len()
            )))
        }
    }
}

/// An ErrorResponse or NoticeResponse body.
pub(crate) fn parse_error(body: Bytes) -> Result<ServerError, Malformed> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut localized_severity = None;
    let mut severity = None;
    let mut code = None;
    let mut message = None;
    let mut detail = None;
    let mut hint = None;
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let raw = r.cstr()?;
        // The server sends its messages in its own encoding before the
        // client_encoding is settled (during authentication); be lenient.
        let value = String::from_utf8_lossy(&raw).into_owned();
        match field {
            b'S' => localized_severity = Some(value),
            b'V' => severity = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            b'D' => detail = Some(value),
            b'H' => hint = Some(value),
            _ => {}
        }
    }
    r.finish()?;
    Ok(ServerError {
        severity: severity
            .or(localized_severity)
            .unwrap_or_else(|| "ERROR".to_owned()),
        code: tokio_postgres::error::SqlState::from_code(code.as_deref().unwrap_or("XX000")),
        message: message.unwrap_or_default(),
        detail,
        hint,
    })
}

/// A RowDescription body: the column names.
pub(crate) fn parse_row_description(body: Bytes) -> Result<Vec<String>, Malformed> {
    let mut r = Reader::new(body, "RowDescription");
    let count = r.i16()?;
    let count = usize::try_from(count)
        .map_err(|_| Malformed::new(format!("RowDescription has {count} columns")))?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(r.string()?);
        // table oid, column number, type oid, type size, type modifier, format
        r.bytes(4 + 2 + 4 + 2 + 4 + 2)?;
    }
    r.finish()?;
    Ok(names)
}

/// A DataRow body: each value, or `None` for NULL. The values share the
/// message's buffer.
pub(crate) fn parse_data_row(body: Bytes) -> Result<Vec<Option<Bytes>>, Malformed> {
    let mut r = Reader::new(body, "DataRow");
    let count = r.i16()?;
    let count = usize::try_from(count)
        .map_err(|_| Malformed::new(format!("DataRow has {count} columns")))?;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.i32()?;
        if len == -1 {
            values.push(None);
        } else {
            let len = usize::try_from(len)
                .map_err(|_| Malformed::new(format!("DataRow has a value of length {len}")))?;
            values.push(Some(r.bytes(len)?));
        }
    }
    r.finish()?;
    Ok(values)
}

/// A ParameterStatus body: name and value.
pub(crate) fn parse_parameter_status(body: Bytes) -> Result<(String, String), Malformed> {
    let mut r = Reader::new(body, "ParameterStatus");
    let name = r.string()?;
    let value = r.string()?;
    r.finish()?;
    Ok((name, value))
}

/// What an Authentication message asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthRequest {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<String> },
    SaslContinue(Bytes),
    SaslFinal(Bytes),
    Other(i32),
}

pub(crate) fn parse_auth(body: Bytes) -> Result<AuthRequest, Malformed> {
    let mut r = Reader::new(body, "Authentication");
    let request = match r.i32()? {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let salt = r.bytes(4)?;
            AuthRequest::Md5 {
                salt: [salt[0], salt[1], salt[2], salt[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let name = r.string()?;
                if name.is_empty() {
                    break;
                }
                mechanisms.push(name);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue(r.rest()),
        12 => AuthRequest::SaslFinal(r.rest()),
        other => {
            r.rest();
            AuthRequest::Other(other)
        }
    };
    r.finish()?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_split_only_when_whole() {
        let mut wire = frame(b'Z', b"I");
        wire.extend(frame(b'W', &[0, 0, 0]));
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.put_u8(*b);
            let got = split_frame(&mut buf).unwrap();
            match i {
                5 => assert_eq!(got.unwrap().tag, b'Z'),
                13 => {
                    let f = got.unwrap();
                    assert_eq!((f.tag, &f.body[..]), (b'W', &[0u8, 0, 0][..]));
                }
                _ => assert!(got.is_none(), "frame at byte {i}"),
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn lengths_are_checked() {
        let mut short = BytesMut::from(&[b'Z', 0, 0, 0, 3][..]);
        assert!(split_frame(&mut short).is_err());
        let mut huge = BytesMut::from(&[b'd', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut huge).is_err());
    }

    #[test]
    fn error_fields() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0\0";
        let err = parse_error(Bytes::from_static(body)).unwrap();
        assert_eq!(err.severity, "FATAL");
        assert_eq!(err.code.code(), "28P01");
        assert!(err.message.starts_with("password authentication failed"));
        assert_eq!(err.detail, None);
        assert!(parse_error(Bytes::from_static(b"SERROR\0")).is_err());
    }

    #[test]
    fn data_rows_keep_nulls_and_bytes() {
        let mut body = BytesMut::new();
        body.put_i16(3);
        body.put_i32(2);
        body.put_slice(b"ab");
        body.put_i32(-1);
        body.put_i32(0);
        let row = parse_data_row(body.freeze()).unwrap();
        assert_eq!(
            row,
            vec![Some(Bytes::from_static(b"ab")), None, Some(Bytes::new())]
        );

        let mut bad = BytesMut::new();
        bad.put_i16(1);
        bad.put_i32(10);
        bad.put_slice(b"abc");
        assert!(parse_data_row(bad.freeze()).is_err());
    }

    #[test]
    fn auth_requests() {
        let mut md5 = BytesMut::new();
        md5.put_i32(5);
        md5.put_slice(&[1, 2, 3, 4]);
        assert_eq!(
            parse_auth(md5.freeze()).unwrap(),
            AuthRequest::Md5 { salt: [1, 2, 3, 4] }
        );
        let mut sasl = BytesMut::new();
        sasl.put_i32(10);
        sasl.put_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(
            parse_auth(sasl.freeze()).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            }
        );
    }
}
