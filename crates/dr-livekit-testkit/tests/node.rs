//! Fidelity through LiveKit's official Node server SDK (`livekit-server-sdk`, installed by
//! `scripts/setup` into `target/drkit-npm`): `tests/node/fidelity.mjs` drives every service
//! and prints what it got back as JSON.

use std::path::PathBuf;
use std::time::Duration;

use dr_livekit_testkit::LiveKitServer;
use serde_json::Value;

use crate::common::participant;

/// Where `npm install --prefix` put the SDK: `DRKIT_NPM_DIR`, else the workspace's
/// `target/drkit-npm`.
fn npm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DRKIT_NPM_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/drkit-npm")
}

#[tokio::test]
async fn node_server_sdk_round_trips_every_service() {
    let npm = npm_dir();
    let sdk = npm.join("node_modules/livekit-server-sdk/package.json");
    assert!(
        sdk.is_file(),
        "LiveKit's Node SDK is not installed at {}: run scripts/setup (it runs npm install \
         --prefix target/drkit-npm livekit-server-sdk), or point DRKIT_NPM_DIR at an install",
        npm.display()
    );
    let server = LiveKitServer::start().await.unwrap();
    let ada = server.join("joined", participant("ada")).unwrap();

    // The script imports 'livekit-server-sdk': run it from a copy beside node_modules, so
    // Node's resolution finds the install.
    let script = npm.join("drkit-livekit-fidelity.mjs");
    tokio::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/fidelity.mjs"),
        &script,
    )
    .await
    .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(&script)
            .env("LIVEKIT_URL", server.url())
            .env("LIVEKIT_API_KEY", server.api_key())
            .env("LIVEKIT_API_SECRET", server.api_secret())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node finishes")
    .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node failed:\n{stdout}\n{stderr}");
    let out: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("node printed no JSON ({e}):\n{stdout}\n{stderr}");
    });

    let room = &out["room"];
    assert!(room["sid"].as_str().unwrap().starts_with("RM_"));
    assert_eq!(room["sameSid"], true);
    assert_eq!(room["emptyTimeout"], 120);
    assert_eq!(room["maxParticipants"], 5);
    assert_eq!(room["metadata"], "m1");
    assert_eq!(out["listed"], serde_json::json!(["joined", "node-room"]));
    assert_eq!(out["listedByName"], serde_json::json!(["node-room"]));
    assert_eq!(out["metadata"], "m2");
    assert_eq!(out["participants"][0]["identity"], "ada");
    assert_eq!(out["participants"][0]["sid"], ada.sid.as_str());
    assert_eq!(out["participants"][0]["state"], 2, "ACTIVE");
    assert_eq!(out["participant"], "ada name");
    assert_eq!(out["updated"]["name"], "Ada (node)");
    assert_eq!(out["updated"]["metadata"], "from-node");
    assert_eq!(out["updated"]["attributes"]["team"], "blue");
    assert_eq!(out["missingParticipant"]["status"], 404);
    assert_eq!(out["missingParticipant"]["code"], "not_found");

    let egress = &out["egress"];
    assert!(egress["id"].as_str().unwrap().starts_with("EG_"));
    assert_eq!(egress["status"], 0, "EGRESS_STARTING");
    assert_eq!(egress["roomName"], "node-room");
    assert_eq!(egress["requestCase"], "roomComposite");
    assert_eq!(egress["layout"], "grid");
    assert_eq!(out["egressListed"], 1);
    assert_eq!(out["egressStopped"], 2, "EGRESS_ENDING");
    assert_eq!(out["egressMissingRoom"]["code"], "not_found");

    assert!(out["ingress"]["id"].as_str().unwrap().starts_with("IN_"));
    assert_eq!(out["ingress"]["streamKey"].as_str().unwrap().len(), 12);
    assert_eq!(out["ingress"]["url"], "rtmp://127.0.0.1:1935/x");
    assert_eq!(
        out["ingressListed"],
        serde_json::json!([out["ingress"]["id"]])
    );
    assert_eq!(out["ingressAfterDelete"], 0);
    assert_eq!(out["ingressMissing"]["status"], 404);

    let sip = &out["sip"];
    assert!(sip["inbound"].as_str().unwrap().starts_with("ST_"));
    assert!(sip["rule"].as_str().unwrap().starts_with("SDR_"));
    assert_eq!(sip["ruleTrunks"], serde_json::json!([sip["inbound"]]));
    assert_eq!(sip["ruleCase"], "dispatchRuleIndividual");
    assert_eq!(sip["inboundListed"], serde_json::json!([sip["inbound"]]));
    assert_eq!(sip["outboundListed"], serde_json::json!([sip["outbound"]]));
    assert_eq!(sip["rulesListed"], serde_json::json!([sip["rule"]]));
    assert_eq!(sip["rulesAfterDelete"], 0);
    assert_eq!(sip["outboundAfterDelete"], 0);

    assert!(out["dispatch"]["id"].as_str().unwrap().starts_with("AD_"));
    assert_eq!(out["dispatch"]["agentName"], "helper");
    // The room's own dispatch for the unnamed agent, and the one made.
    assert_eq!(out["dispatchListed"], serde_json::json!(["", "helper"]));
    assert_eq!(out["dispatchAfterDelete"], serde_json::json!([""]));

    assert_eq!(out["deleteMissing"]["status"], 404);
    assert_eq!(out["deleteMissing"]["code"], "not_found");
    assert_eq!(out["roomsAtEnd"], serde_json::json!(["joined"]));
    // LiveKit's middleware answers a token that does not verify in plain text; the SDK
    // takes the text as the message.
    assert_eq!(out["wrongSecret"]["status"], 401);
    assert!(
        out["wrongSecret"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid authorization token"),
        "{}",
        out["wrongSecret"]
    );
    assert_eq!(server.counts(), (1, 0));
}
