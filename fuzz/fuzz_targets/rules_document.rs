//! The rules document (an SSM parameter's value, a RULES_FILE, `check`): any text is either
//! accepted whole or rejected with a one-line error, and an accepted document decides every
//! task consistently with its reason, the fail policy and its pass-through keys.

#![no_main]

use conditional_recording::rules::{FailPolicy, Rules, Task};
use conditional_recording_fuzz::decide;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// Tasks every accepted document is asked about: the fixtures' shapes, with and without a
/// queue SID and name.
fn tasks() -> Vec<(Value, Option<&'static str>, Option<&'static str>)> {
    let inbound = json!({"call_sid": "CA11111111111111111111111111111111", "direction": "inbound",
        "conversations": {"topics": ["billing", "financial"], "queue_time": 12}, "ivr": {"consent": false}});
    let outbound =
        json!({"direction": "outbound", "outbound_to": "+10000000000", "autoAnswer": "true"});
    let chat = json!({"channelType": "web", "direction": "inbound"});
    vec![
        (
            inbound.clone(),
            Some("WQ0123456789abcdef0123456789abcdef"),
            Some("Payments"),
        ),
        (inbound, Some("WQ00000000000000000000000000000000"), None),
        (outbound, None, Some("Sales")),
        (chat, Some("WQ11111111111111111111111111111111"), None),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Rules::from_json(text) {
        Ok(rules) => {
            assert!(
                Rules::check(text).is_ok(),
                "`check` accepts what the service accepts"
            );
            let _ = rules.summary();
            let instruction = rules.instruction();
            assert!(!instruction.contains_key("instruction"));
            assert!(!instruction.contains_key("conference_record"));
            for (attributes, queue_sid, queue_name) in tasks() {
                for policy in [FailPolicy::DoNotRecord, FailPolicy::Record] {
                    let task = Task {
                        attributes: &attributes,
                        queue_sid,
                        queue_name,
                        channel: None,
                    };
                    decide(&rules, &task, policy);
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            assert!(
                Rules::check(text).is_err(),
                "`check` rejects what the service rejects"
            );
        }
    }
});
