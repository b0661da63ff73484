//! The Lease: one holder at a time, whoever races; a holder that stops
//! renewing loses it only after a whole duration; a release hands it over
//! at once.

use std::time::Duration;

use dr_k8s::{Acquired, LeaseLock};
use tokio::time::Instant;

use crate::common::setup;

fn holds(acquired: &Acquired) -> bool {
    matches!(acquired, Acquired::Held(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_never_hold_the_lease_at_once() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let lock = |holder: &str| {
        LeaseLock::new(
            setup.cluster.clone(),
            ns,
            "failover",
            holder,
            Duration::from_secs(1),
        )
    };
    let (a, b) = (lock("a"), lock("b"));
    // Racing from nothing, and racing to renew: one wins each round.
    for round in 0..20 {
        let (got_a, got_b) = tokio::join!(a.try_acquire(), b.try_acquire());
        let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
        assert!(
            holds(&got_a) != holds(&got_b),
            "round {round}: {got_a:?} {got_b:?}"
        );
    }
    let record = a.read().await.unwrap().unwrap();
    let (holder, other) = if record.holder.as_deref() == Some("a") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(record.transitions, 0, "renewals are not transitions");

    // The holder stops renewing: the other takes it only after a whole
    // duration of seeing it unrenewed.
    let first_refusal = other.try_acquire().await.unwrap();
    let Acquired::Taken { holder: seen, .. } = &first_refusal else {
        panic!("{first_refusal:?}");
    };
    assert_eq!(seen, holder.holder());
    let since = Instant::now();
    loop {
        if holds(&other.try_acquire().await.unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        since.elapsed() >= Duration::from_millis(900),
        "{:?}",
        since.elapsed()
    );
    let record = other.read().await.unwrap().unwrap();
    assert_eq!(record.holder.as_deref(), Some(other.holder()));
    assert_eq!(record.transitions, 1);
    assert!(
        !holds(&holder.try_acquire().await.unwrap()),
        "the old holder must wait too"
    );

    // A release hands it over at once.
    assert!(other.release().await.unwrap());
    assert!(!holder.release().await.unwrap(), "only the holder releases");
    assert!(holds(&holder.try_acquire().await.unwrap()));
}
