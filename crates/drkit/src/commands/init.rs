//! `drkit init`: creates the repository the config names, encrypted with
//! its password at the recommended key-derivation cost.

use crate::context::Context;
use crate::failure::Outcome;

/// Creates the repository; one that exists already is left as it is.
pub(crate) async fn run(cx: &Context) -> Outcome {
    cx.init_repository().await?;
    cx.out
        .line(format_args!("created the repository at {}", cx.location()));
    Ok(())
}
