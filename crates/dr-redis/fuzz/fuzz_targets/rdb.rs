//! Arbitrary bytes through framing (whole and in pieces), decoding of every
//! value, DUMP payloads and verify: errors are fine, panics, hangs and
//! runaway memory are findings, and so is any difference between the
//! whole and the pieced parse.

#![no_main]

use bytes::Bytes;
use dr_redis::{DumpPayload, Event, RdbParser, ValueType, decode_value, events, verify_slice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as an RDB.
    let mut read = events(data);
    let whole: Vec<Result<Event, String>> =
        read.by_ref().map(|e| e.map_err(|e| e.to_string())).collect();
    let trailing = !read.parser().remainder().is_empty();
    let mut version = 0;
    let mut decoded_all = true;
    for event in whole.iter().flatten() {
        match event {
            Event::Header(header) => version = header.version,
            Event::Key(key) => {
                let value = decode_value(key.value_type, &key.value, version);
                decoded_all &= value.is_ok();
                let payload = DumpPayload::from_key(key, version);
                let parsed = DumpPayload::parse(payload.into_bytes()).expect("a payload we built");
                let again = parsed.decode();
                assert_eq!(value.is_ok(), again.is_ok());
                if let (Ok(a), Ok(b)) = (&value, &again) {
                    // NaN scores differ from themselves; compare the debug forms.
                    assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
            }
            _ => {}
        }
    }
    // verify checks each value with the walk decoding runs, building
    // nothing: it accepts exactly the whole RDBs whose values all decode.
    let verified = verify_slice(data).is_ok();
    let whole_rdb = matches!(whole.last(), Some(Ok(Event::Eof(_)))) && !trailing;
    assert_eq!(verified, whole_rdb && decoded_all);

    // The same input in pieces: the same events and the same error.
    if let Some(&size) = data.first() {
        let size = usize::from(size % 17) + 1;
        let mut parser = RdbParser::new();
        let mut pieced = Vec::new();
        let mut failed = false;
        for piece in data.chunks(size) {
            parser.feed(piece);
            failed = drain(&mut parser, &mut pieced);
            if failed {
                break;
            }
        }
        if !failed {
            parser.end_input();
            drain(&mut parser, &mut pieced);
        }
        assert_eq!(format!("{whole:?}"), format!("{pieced:?}"));
    }

    // The bytes as a value of any type: the decoders without the framing.
    if data.len() >= 2 {
        let raw = Bytes::copy_from_slice(&data[2..]);
        let _ = decode_value(ValueType(data[0] % 32), &raw, u16::from(data[1] % 13));
        let _ = DumpPayload::parse(Bytes::copy_from_slice(data)).map(|p| p.decode());
    }
});

/// Takes the events the parser has; true if it failed.
fn drain(parser: &mut RdbParser, out: &mut Vec<Result<Event, String>>) -> bool {
    loop {
        match parser.next_event() {
            Ok(Some(event)) => out.push(Ok(event)),
            Ok(None) => return false,
            Err(e) => {
                out.push(Err(e.to_string()));
                return true;
            }
        }
    }
}
