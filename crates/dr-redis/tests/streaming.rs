//! The parser fed in pieces: the same events whatever the pieces; cut or
//! damaged input gives errors, never a panic.

use crate::common::{GOOD_FILES, data};
use dr_redis::{Error, Event, RdbParser, events, verify_slice};
use proptest::prelude::*;

/// The events of `rdb` fed in pieces that end at `cuts`.
fn in_pieces(rdb: &[u8], cuts: &[usize]) -> Result<Vec<Event>, Error> {
    let mut parser = RdbParser::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([rdb.len()].iter()) {
        let end = end.clamp(start, rdb.len());
        parser.feed(&rdb[start..end]);
        start = end;
        while let Some(event) = parser.next_event()? {
            out.push(event);
        }
    }
    parser.end_input();
    while let Some(event) = parser.next_event()? {
        out.push(event);
    }
    assert!(parser.is_done());
    Ok(out)
}

fn whole(rdb: &[u8]) -> Vec<Event> {
    events(rdb).collect::<Result<_, _>>().unwrap()
}

#[test]
fn chunks_of_every_size_give_the_same_events() {
    for name in GOOD_FILES {
        let rdb = data(name);
        let expected = whole(&rdb);
        for size in 1..=rdb.len() {
            let cuts: Vec<usize> = (size..rdb.len()).step_by(size).collect();
            assert_eq!(
                in_pieces(&rdb, &cuts).unwrap(),
                expected,
                "{name} in chunks of {size}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_cuts_give_the_same_events(file in 0..GOOD_FILES.len(), mut cuts in prop::collection::vec(0usize..800, 0..40)) {
        let rdb = data(GOOD_FILES[file]);
        cuts.sort_unstable();
        prop_assert_eq!(in_pieces(&rdb, &cuts).unwrap(), whole(&rdb));
    }
}

#[test]
fn every_truncation_is_an_error() {
    for name in GOOD_FILES {
        let rdb = data(name);
        for end in 0..rdb.len() {
            let err = events(&rdb[..end])
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{name} cut at {end} parsed"));
            assert!(
                matches!(
                    err,
                    Error::Truncated { .. } | Error::UnsupportedFormat { .. }
                ),
                "{name} cut at {end}: {err}"
            );
            assert!(verify_slice(&rdb[..end]).is_err());
        }
    }
}

#[test]
fn every_flipped_byte_is_an_error() {
    for name in GOOD_FILES {
        let rdb = data(name);
        let checksummed =
            matches!(whole(&rdb).last(), Some(Event::Eof(eof)) if eof.checksum.is_some());
        for at in 0..rdb.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = rdb.clone();
                bad[at] ^= flip;
                // Never a panic; with a checksum, never accepted.
                let result = verify_slice(&bad);
                if checksummed {
                    assert!(result.is_err(), "{name}: byte {at} ^ {flip:#x} accepted");
                }
            }
        }
    }
}

#[test]
fn a_flip_inside_a_value_is_a_checksum_error() {
    let rdb = data("zset-ziplist.rdb");
    let key = whole(&rdb)
        .into_iter()
        .find_map(|event| match event {
            Event::Key(key) => Some(key),
            _ => None,
        })
        .unwrap();
    // A byte of a member's text inside the ziplist: the framing still holds.
    let at = key.value_offset as usize + key.value.len() - 3;
    let mut bad = rdb.clone();
    bad[at] ^= 0x01;
    let err = events(&bad).find_map(Result::err).unwrap();
    assert!(matches!(err, Error::Checksum { what: "RDB", .. }), "{err}");
}

#[test]
fn feeding_after_the_end_is_refused() {
    let rdb = data("hash-ziplist.rdb");
    let mut parser = RdbParser::new();
    parser.feed(&rdb);
    parser.end_input();
    parser.feed(b"more");
    assert!(matches!(
        parser.next_event(),
        Err(Error::InvalidState { .. })
    ));
}
