//! Asks the control plane for one decision with the Rust SDK and prints the answer as JSON.
//!
//! `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR` and `ZT_TOKEN` configure it, as for every enforcement
//! point; the arguments are `ACTION [RESOURCE [CONTEXT_JSON]]`. Exit 0 with the decision on
//! stdout (allow or deny), 1 with the error on stderr when no valid decision was obtained,
//! 2 on a usage error. The Python SDK's one-envelope test drives it as the Rust leg.

use std::process::ExitCode;

use zt_client::ControlPlane;
use zt_contract::DecisionRequest;

/// 128 random bits, hex, as every enforcement point sends by default.
fn nonce() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(action), resource, context) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: decide ACTION [RESOURCE [CONTEXT_JSON]]");
        return ExitCode::from(2);
    };
    let context = match context.map(|text| serde_json::from_str(text)).transpose() {
        Ok(context) => context,
        Err(e) => {
            eprintln!("CONTEXT_JSON is not a JSON object: {e}");
            return ExitCode::from(2);
        }
    };
    let request_id = match nonce() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("no randomness for the request id: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request = DecisionRequest {
        actor: std::env::var("ZT_ACTOR").unwrap_or_default(),
        action: action.clone(),
        resource: resource.cloned().unwrap_or_default(),
        context,
        request_id: Some(request_id),
        ..DecisionRequest::default()
    };
    let url = std::env::var("ZT_CONTROL_PLANE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:3000".to_string());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(async {
        let mut client = ControlPlane::new(&url)?;
        if let Ok(token) = std::env::var("ZT_TOKEN") {
            client = client.with_bearer(&token)?;
        }
        client.decide(&request).await
    });
    match answer.map(|decision| serde_json::to_string(&decision)) {
        Ok(Ok(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("cannot print the decision: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("no decision: {e}");
            ExitCode::FAILURE
        }
    }
}
