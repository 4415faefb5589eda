//! Reconciling a period (SPEC section 10): what a run costs in Twilio requests, ledger
//! requests and time. The binary's `reconcile` runs against the Voice API stand-in, which adds
//! a delay to every answer, and the ledger in moto's DynamoDB behind a counting proxy; the
//! ledger holds the calls' first decisions (as the assignment callback writes them) and no
//! conference has been tied yet.
//!
//! - run 1: every conference is new, so each is fetched once (at most 10 at a time) and tied.
//! - run 2: nothing new; only the list's pages and one batched ledger read per 100 SIDs.
//!
//! `cargo bench --bench reconcile`: 10,000 recordings on 4,000 conferences, 50 ms added to
//! every Twilio answer (BENCHMARKS.md, "Reconciling a period"). Under `cargo test` (no
//! `--bench`), 250 recordings on 100 conferences and 5 ms, and the cost bounds are checked.
//! Needs `.venv` (moto), which `make test` makes.

#[path = "../tests/it/counting.rs"]
#[allow(dead_code)]
mod counting;
#[path = "../tests/it/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "../tests/it/standin.rs"]
#[allow(dead_code)]
mod standin;
#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use conditional_recording::ledger::{DecidedBy, FirstDecision, unix_now};
use conditional_recording::ports::{LEDGER_BATCH, Ledger};
use conditional_recording::reconcile::IN_FLIGHT;
use conditional_recording::sources::ledger_table::LedgerTable;

use counting::CountingProxy;
use moto::Moto;
use standin::{Fault, Of, StandIn};

const ACCOUNT: &str = "AC000000000000000000000000000be7c1";
const TABLE: &str = "cr-ledger";

/// One size of the benchmark.
struct Size {
    recordings: usize,
    conferences: usize,
    delay: Duration,
}

/// What one run cost.
struct Cost {
    seconds: f64,
    exit: Option<i32>,
    recordings: u64,
    outcomes: Value,
    list_pages: usize,
    conference_fetches: usize,
    twilio_requests: usize,
    most_in_flight: usize,
    ledger: HashMap<String, usize>,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        Size {
            recordings: 10_000,
            conferences: 4_000,
            delay: Duration::from_millis(50),
        }
    } else {
        Size {
            recordings: 250,
            conferences: 100,
            delay: Duration::from_millis(5),
        }
    };
    let moto = Moto::start();
    moto.create_ledger_table(TABLE);
    let proxy = CountingProxy::start(&moto.endpoint());
    let standin = StandIn::start();
    standin.add_credentials(ACCOUNT, support::TOKEN);

    let started = Instant::now();
    let tasks = populate(&moto, &standin, &size);
    println!(
        "reconcile: {} recordings on {} conferences ({} do-not-record), ledger written in {:.1} s",
        size.recordings,
        size.conferences,
        tasks.iter().filter(|record| !**record).count(),
        started.elapsed().as_secs_f64()
    );
    standin.set_fault(Some(Fault::Delay(size.delay)));

    let first = run(&standin, &proxy, &moto);
    let second = run(&standin, &proxy, &moto);
    println!(
        "| run | time | exit | recordings | list pages | conference fetches | Twilio requests | most in flight | ledger requests |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (name, cost) in [
        ("1: every conference new", &first),
        ("2: nothing new", &second),
    ] {
        let mut ledger: Vec<String> = cost
            .ledger
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        ledger.sort();
        println!(
            "| {name} | {:.2} s | {:?} | {} | {} | {} | {} | {} | {} |",
            cost.seconds,
            cost.exit,
            cost.recordings,
            cost.list_pages,
            cost.conference_fetches,
            cost.twilio_requests,
            cost.most_in_flight,
            ledger.join(", ")
        );
    }
    println!("outcomes: {}", second.outcomes);

    // The cost bounds (SPEC section 10), checked at either size.
    let pages = size.recordings.div_ceil(1000);
    let batches = size.conferences.div_ceil(LEDGER_BATCH);
    assert_eq!(first.recordings as usize, size.recordings);
    assert_eq!(
        first.conference_fetches, size.conferences,
        "each new one once"
    );
    assert_eq!(second.conference_fetches, 0, "never twice");
    assert_eq!(second.list_pages, pages);
    assert_eq!(second.twilio_requests, pages, "nothing but the list");
    assert!(first.most_in_flight <= IN_FLIGHT && second.most_in_flight <= IN_FLIGHT);
    assert_eq!(
        second.ledger,
        HashMap::from([("BatchGetItem".to_owned(), batches)]),
        "one read per {LEDGER_BATCH} SIDs, no write"
    );
    for cost in [&first, &second] {
        assert_eq!(
            cost.exit,
            Some(1),
            "the do-not-record calls' recordings remain"
        );
    }
}

/// The period's recordings in the stand-in, and the first decisions of their calls in the
/// ledger (one in five is do-not-record); the decisions, in conference order.
fn populate(moto: &Moto, standin: &StandIn, size: &Size) -> Vec<bool> {
    let made = SystemTime::now() - Duration::from_secs(600);
    let sid = |prefix: &str, n: usize| format!("{prefix}{n:032x}");
    let decisions: Vec<FirstDecision> = (0..size.conferences)
        .map(|n| FirstDecision {
            task_sid: sid("WT", n),
            record: n % 5 != 0,
            reason: if n % 5 != 0 {
                "no exclusion matched".to_owned()
            } else {
                "excluded by queue (exclude_queues[0])".to_owned()
            },
            rule: (n % 5 == 0).then(|| "exclude_queues[0]".to_owned()),
            rules_version: Some(3),
            decided_at: unix_now() - 600,
            decided_by: DecidedBy::Assignment,
            call_sid: Some(sid("CA", n)),
            conference_sid: None,
        })
        .collect();
    for n in 0..size.conferences {
        standin.add_conference(ACCOUNT, &sid("CF", n), &sid("WT", n), "completed");
    }
    // Recordings spread over the conferences in turn, as calls are recorded through a day.
    for r in 0..size.recordings {
        standin.add_recording_at(
            ACCOUNT,
            Of::Conference(sid("CF", r % size.conferences)),
            &sid("RE", r),
            "completed",
            made + Duration::from_millis(r as u64),
            None,
        );
    }
    let ledger = LedgerTable::new(&moto::sdk_config(&moto.endpoint()), TABLE, 400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        stream::iter(&decisions)
            .map(|first| async { ledger.first_decision(first).await.expect("written") })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    });
    decisions.iter().map(|d| d.record).collect()
}

/// One `reconcile --since 1h --format json` by the binary, and what it cost.
fn run(standin: &StandIn, proxy: &CountingProxy, moto: &Moto) -> Cost {
    let before = standin.requests().len();
    proxy.reset();
    let mut env = moto::aws_env(&moto.endpoint());
    env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL_DYNAMODB");
    env.extend([
        ("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint()),
        ("LEDGER_TABLE", TABLE.to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT.to_owned()),
        ("TWILIO_AUTH_TOKEN", support::TOKEN.to_owned()),
        ("TWILIO_VOICE_API_BASE_URL", standin.base_url()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let started = Instant::now();
    let output = support::run_binary(
        "reconcile-bench",
        &["reconcile", "--since", "1h", "--format", "json"],
        &env,
    );
    let seconds = started.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {}", support::describe(&output)));
    assert_eq!(report["complete"], true, "{}", report["unchecked"]);
    let requests = &standin.requests()[before..];
    let list = format!("/2010-04-01/Accounts/{ACCOUNT}/Recordings.json");
    let conference = format!("/2010-04-01/Accounts/{ACCOUNT}/Conferences/");
    Cost {
        seconds,
        exit: output.status.code(),
        recordings: report["recordings"].as_u64().unwrap_or_default(),
        outcomes: report["outcomes"].clone(),
        list_pages: requests.iter().filter(|r| r.path() == list).count(),
        conference_fetches: requests
            .iter()
            .filter(|r| r.path().starts_with(&conference))
            .count(),
        twilio_requests: requests.len(),
        most_in_flight: standin.most_in_flight(),
        ledger: proxy.counts(),
    }
}
