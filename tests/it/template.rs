//! template.yaml's alarms and dashboard read only metrics the code emits: the same names, the
//! same namespace (the function's `METRICS_NAMESPACE`) and the same dimension sets, with
//! dimension values the code writes. The catalogue comes from `metrics::CATALOGUE` and
//! `metrics::DIMENSIONS`, which render every directive; the first test holds those values to
//! the code that writes them. The template is read by `scripts/check-template-metrics.py` with
//! cfn-lint's reader (the test virtualenv), which keeps CloudFormation's tags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use conditional_recording::enforcement::ActionKind;
use conditional_recording::metrics::{self, CATALOGUE, DIMENSIONS};
use conditional_recording::reconcile;
use conditional_recording::rules::{Decision, Reason, RuleList, RuleRef};
use conditional_recording::service::Refusal;
use serde_json::{Value, json};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn values(dimension: &str) -> Vec<&'static str> {
    DIMENSIONS
        .iter()
        .find(|d| d.name == dimension)
        .unwrap_or_else(|| panic!("no dimension {dimension}"))
        .values
        .to_vec()
}

/// Every reason; the match has no wildcard, so a new reason does not compile until it is here.
fn every_reason() -> Vec<Reason> {
    let rule = RuleRef {
        list: RuleList::ExcludeQueues,
        index: 0,
    };
    let all = vec![
        Reason::NotACall,
        Reason::Disabled,
        Reason::ExcludedByQueue(rule),
        Reason::ExcludedByAttribute(rule),
        Reason::Included(rule),
        Reason::NotIncluded,
        Reason::NoExclusionMatched,
        Reason::RulesUnavailable,
        Reason::QueueNameUnresolved,
        Reason::AttributesUnparseable,
    ];
    for reason in &all {
        match reason {
            Reason::NotACall
            | Reason::Disabled
            | Reason::ExcludedByQueue(_)
            | Reason::ExcludedByAttribute(_)
            | Reason::Included(_)
            | Reason::NotIncluded
            | Reason::NoExclusionMatched
            | Reason::RulesUnavailable
            | Reason::QueueNameUnresolved
            | Reason::AttributesUnparseable => {}
        }
    }
    all
}

fn sorted(mut list: Vec<&'static str>) -> Vec<&'static str> {
    list.sort_unstable();
    list
}

#[test]
fn the_catalogues_dimension_values_are_what_the_code_writes() {
    let reasons = every_reason().iter().map(Reason::kind).collect();
    assert_eq!(sorted(values("Reason")), sorted(reasons));

    // `Outcome` carries a decision's outcome and a reconciled recording's.
    let mut outcomes = vec![
        Decision::NotACall.outcome(),
        Decision::fail(
            conditional_recording::rules::FailPolicy::Record,
            Reason::RulesUnavailable,
        )
        .outcome(),
        Decision::fail(
            conditional_recording::rules::FailPolicy::DoNotRecord,
            Reason::RulesUnavailable,
        )
        .outcome(),
    ];
    outcomes.extend(reconcile::Outcome::ALL.map(reconcile::Outcome::as_str));
    assert_eq!(sorted(values("Outcome")), sorted(outcomes));

    let actions = [
        ActionKind::Stopped,
        ActionKind::Deleted,
        ActionKind::NoneFound,
        ActionKind::Failed,
    ]
    .map(ActionKind::as_str)
    .to_vec();
    assert_eq!(sorted(values("Action")), sorted(actions));

    let causes = [
        Refusal::SignatureMissing,
        Refusal::SignatureInvalid,
        Refusal::OtherAccount,
        Refusal::TokensUnavailable,
        Refusal::BodyUnsigned,
        Refusal::BodyMismatch,
    ]
    .iter()
    .filter_map(Refusal::signature_cause)
    .collect();
    assert_eq!(sorted(values("Cause")), sorted(causes));

    // Every dimension a metric is emitted with is described, and every described one is used.
    let used: Vec<&str> = CATALOGUE
        .iter()
        .flat_map(|m| m.dimension_sets.iter().flat_map(|set| set.iter().copied()))
        .collect();
    for dimension in DIMENSIONS {
        assert!(
            used.contains(&dimension.name),
            "{} is unused",
            dimension.name
        );
    }
    for name in used {
        assert!(
            DIMENSIONS.iter().any(|d| d.name == name),
            "{name} has no values"
        );
    }
    assert_eq!(metrics::namespace(), metrics::DEFAULT_NAMESPACE);
}

/// The catalogue as the check reads it.
fn catalogue() -> Value {
    let metrics: Vec<Value> = CATALOGUE
        .iter()
        .map(|m| json!({"name": m.name, "dimension_sets": m.dimension_sets}))
        .collect();
    let dimensions: serde_json::Map<String, Value> = DIMENSIONS
        .iter()
        .map(|d| (d.name.to_owned(), json!(d.values)))
        .collect();
    json!({"metrics": metrics, "dimensions": dimensions})
}

/// Runs the check on a template; (success, stdout, stderr).
fn check(template: &Path) -> (bool, String, String) {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "cfn-lint's reader is missing (no .venv/bin/python): run `make test`"
    );
    let mut child = Command::new(python)
        .arg(repo().join("scripts/check-template-metrics.py"))
        .arg(template)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the check starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(catalogue().to_string().as_bytes())
        .expect("the catalogue is written");
    let output = child.wait_with_output().expect("the check ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn template_text() -> String {
    std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml")
}

/// A copy of the template with one edit, in the test's own directory.
fn edited(name: &str, from: &str, to: &str) -> PathBuf {
    let text = template_text();
    assert!(text.contains(from), "template.yaml has no {from:?}");
    let dir = repo().join("target/tmp/template-check");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text.replacen(from, to, 1)).expect("the copy is written");
    path
}

#[test]
fn every_alarm_and_dashboard_metric_is_one_the_code_emits() {
    let (ok, out, err) = check(&repo().join("template.yaml"));
    assert!(ok, "{err}");
    assert!(err.is_empty(), "{err}");
    // What the README says to alarm on: refresh failures (2), fail-policy decisions (3),
    // enforcement failures, rules age, a rejected version in force, signature rejections,
    // function errors and throttles; a sweep's violations, an incomplete or failed sweep, and
    // ledger failures.
    assert!(
        out.starts_with("checked 15 alarms and ")
            && out.contains(&format!(" dashboard metrics against {} ", CATALOGUE.len())),
        "{out}"
    );
    let text = template_text();
    for alarm in [
        "RulesRefreshFailuresAlarm",
        "TokenRefreshFailuresAlarm",
        "RulesUnavailableAlarm",
        "QueueNameUnresolvedAlarm",
        "AttributesUnparseableAlarm",
        "EnforcementFailuresAlarm",
        "RulesAgeAlarm",
        "RulesVersionBehindAlarm",
        "SignatureRejectionsAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "SweepViolationsAlarm",
        "SweepIncompleteAlarm",
        "SweepErrorsAlarm",
        "LedgerFailuresAlarm",
    ] {
        assert!(text.contains(&format!("\n  {alarm}:\n")), "{alarm}");
    }
}

#[test]
fn the_check_finds_a_metric_the_code_does_not_emit() {
    let cases = [
        (
            "misspelt-metric",
            "MetricName: Enforcements",
            "MetricName: Enforcement",
            "Enforcement is not a metric the service emits",
        ),
        (
            "misspelt-value",
            "Value: rules_unavailable",
            "Value: rules-unavailable",
            "Decisions never has Reason = 'rules-unavailable'",
        ),
        (
            "other-dimension",
            "Name: Reason\n          Value: queue_name_unresolved",
            "Name: Queue\n          Value: queue_name_unresolved",
            "Decisions is emitted with dimensions ['Outcome'] or ['Reason'], not ['Queue']",
        ),
        (
            "fixed-namespace",
            "      Namespace: !Sub \"ConditionalRecording/${AWS::StackName}\"\n      MetricName: Enforcements",
            "      Namespace: ConditionalRecording\n      MetricName: Enforcements",
            "namespace \"ConditionalRecording\" is neither the function's METRICS_NAMESPACE",
        ),
        (
            "dashboard-metric",
            "\"${Namespace}\", \"RulesAgeSeconds\"",
            "\"${Namespace}\", \"RulesAge\"",
            "RulesAge is not a metric the service emits",
        ),
        (
            "dashboard-value",
            "\"none_found\"",
            "\"nothing_found\"",
            "Enforcements never has Action = 'nothing_found'",
        ),
        (
            "other-function",
            "Value: !Ref SweepFunction",
            "Value: !Ref SweepLog",
            "SweepErrorsAlarm: AWS/Lambda Errors FunctionName {\"Ref\": \"SweepLog\"} names no AWS::Serverless::Function",
        ),
        (
            "dashboard-function",
            "\"Duration\", \"FunctionName\", \"${SweepFunction}\"",
            "\"Duration\", \"FunctionName\", \"${Sweep}\"",
            "AWS/Lambda Duration FunctionName \"${Sweep}\" names no AWS::Serverless::Function",
        ),
        (
            "unpublished-alias",
            "Value: !Sub \"${DecisionFunction}:live\"",
            "Value: !Sub \"${SweepFunction}:live\"",
            "is not the alias of its FunctionName (SweepFunction publishes none)",
        ),
        (
            "one-namespace",
            "METRICS_NAMESPACE: !Sub \"ConditionalRecording/${AWS::StackName}\"",
            "METRICS_NAMESPACE: ConditionalRecording/Sweeps",
            "every function must set the same METRICS_NAMESPACE",
        ),
        (
            "silent-alarm",
            "      AlarmActions: [!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]]\n      OKActions",
            "      OKActions",
            "the alarm notifies no one",
        ),
    ];
    for (name, from, to, said) in cases {
        let (ok, _, err) = check(&edited(name, from, to));
        assert!(!ok, "{name}: the check passed");
        assert!(err.contains(said), "{name}: {err}");
    }
}

/// The template as cfn-lint reads it, as JSON: tags are objects (`{"Fn::Sub": ...}`).
fn template_json() -> Value {
    let output = Command::new(repo().join(".venv/bin/python"))
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             template, problems = decode(sys.argv[1])\n\
             assert not problems, problems\n\
             json.dump(template, sys.stdout)",
        ])
        .arg(repo().join("template.yaml"))
        .output()
        .expect("the reader runs (.venv, made by `make test`)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the template as JSON")
}

/// The statements a function is granted: its inline policies' and those of the managed
/// policies of this template it names (`!Ref`), the one under `!If` included.
fn statements<'a>(template: &'a Value, function: &str) -> Vec<&'a Value> {
    let resources = &template["Resources"];
    let policies = resources[function]["Properties"]["Policies"]
        .as_array()
        .unwrap_or_else(|| panic!("{function} has a list of policies"));
    let mut documents = Vec::new();
    for policy in policies {
        match policy["Ref"].as_str() {
            Some(name) => {
                assert_eq!(
                    resources[name]["Type"], "AWS::IAM::ManagedPolicy",
                    "{function}: {name}"
                );
                documents.push(&resources[name]["Properties"]["PolicyDocument"]);
            }
            None => documents.push(policy),
        }
    }
    let mut statements = Vec::new();
    for document in documents {
        for statement in document["Statement"].as_array().expect("statements") {
            match statement["Fn::If"].as_array() {
                Some(branches) => {
                    statements.extend(branches[1..].iter().filter(|s| s.get("Action").is_some()))
                }
                None => statements.push(statement),
            }
        }
    }
    statements
}

#[test]
fn the_stack_keeps_its_rules_and_log_and_reads_history_of_the_rules_only() {
    let template = template_json();
    let resources = &template["Resources"];
    for kept in ["RulesParameter", "DecisionLog"] {
        assert_eq!(resources[kept]["DeletionPolicy"], "Retain", "{kept}");
        assert_eq!(resources[kept]["UpdateReplacePolicy"], "Retain", "{kept}");
    }
    let statements = statements(&template, "DecisionFunction");
    let rules_arn = json!({"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${RulesParameterName}"});
    let history: Vec<&&Value> = statements
        .iter()
        .filter(|s| s.to_string().contains("GetParameterHistory"))
        .collect();
    assert_eq!(history.len(), 1, "one statement grants the history");
    assert_eq!(history[0]["Action"], "ssm:GetParameterHistory");
    assert_eq!(
        history[0]["Resource"], rules_arn,
        "on the rules parameter only"
    );
    // Nothing else is granted on a wildcard.
    for statement in statements {
        assert!(!statement.to_string().contains("\"*\""), "{statement}");
    }
}

#[test]
fn the_routes_call_the_live_alias_behind_the_guardrails() {
    let template = template_json();
    let resources = &template["Resources"];
    let function = &resources["DecisionFunction"]["Properties"];
    assert_eq!(function["AutoPublishAlias"], "live");
    assert_eq!(
        function["DeploymentPreference"]["Type"],
        json!({"Ref": "DeploymentType"})
    );
    let rollback: Vec<&str> = function["DeploymentPreference"]["Alarms"]
        .as_array()
        .expect("rollback alarms")
        .iter()
        .filter_map(|a| a["Ref"].as_str())
        .collect();
    for alarm in [
        "FunctionErrorsAlarm",
        "RulesUnavailableAlarm",
        "QueueNameUnresolvedAlarm",
        "AttributesUnparseableAlarm",
    ] {
        assert!(rollback.contains(&alarm), "{alarm} rolls a deploy back");
        assert!(resources[alarm].is_object(), "{alarm} exists");
    }
    for (route, path) in [("Assignment", "/assignment"), ("Events", "/events")] {
        let event = &function["Events"][route]["Properties"];
        assert_eq!(event["ApiId"], json!({"Ref": "Api"}), "{route}");
        assert_eq!(event["Path"], path);
    }
    let api = &resources["Api"]["Properties"];
    assert_eq!(
        api["DefaultRouteSettings"],
        json!({
            "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}
        })
    );
    assert_eq!(
        api["AccessLogSettings"]["DestinationArn"],
        json!({"Fn::GetAtt": ["AccessLog", "Arn"]})
    );
    let format = api["AccessLogSettings"]["Format"]
        .as_str()
        .expect("an access log format");
    let format: Value = serde_json::from_str(format).expect("the access log is JSON lines");
    for field in format.as_object().expect("fields").values() {
        let field = field.as_str().expect("a context variable");
        for never in ["querystring", "header", "body", "path"] {
            assert!(!field.contains(never), "{field}: no caller data");
        }
    }
    assert_eq!(
        function["Environment"]["Variables"]["METRICS_NAMESPACE"],
        json!({"Fn::Sub": "ConditionalRecording/${AWS::StackName}"})
    );
}
