//! Asks the control plane for one decision with the Rust SDK and prints the answer as JSON.
//!
//! `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR` and `ZT_TOKEN` configure it, as for every enforcement
//! point; the arguments are `ACTION [RESOURCE [CONTEXT_JSON]]`. Exit 0 with the decision on
//! stdout (allow or deny), 1 with the error on stderr when no valid decision was obtained,
//! 2 on a usage error. The Python SDK's one-envelope test drives it as the Rust leg.

use std::process::ExitCode;

use zt_client::ControlPlane;
use zt_contract::DecisionRequest;

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
    // The SDK supplies the environment's defaults and a random request id.
    let answer = runtime.block_on(async {
        let client = ControlPlane::from_env()?;
        let request = DecisionRequest {
            context,
            ..client.request(action, resource.map_or("", String::as_str))
        };
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
