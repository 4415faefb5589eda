//! template.yaml's alarms and dashboard read only metrics the code emits: the same names, the
//! same namespace (the function's `METRICS_NAMESPACE`) and the same dimension sets, with
//! dimension values the code writes. The catalogue comes from `metrics::CATALOGUE` and
//! `metrics::DIMENSIONS`, which render every directive; the first test holds those values to
//! the code that writes them. The template is read by `scripts/check-template-metrics.py` with
//! cfn-lint's reader (the test virtualenv), which keeps CloudFormation's tags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use conditional_recording::enforcement::ActionKind;
use conditional_recording::lambda;
use conditional_recording::metrics::{self, CATALOGUE, DIMENSIONS};
use conditional_recording::reconcile::{self, Window};
use conditional_recording::rules::{Decision, Reason, RuleList, RuleRef};
use conditional_recording::service::Refusal;
use conditional_recording::sources::https::SdkClient;
use serde_json::{Value, json};

use crate::moto::{self, Moto};

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
        ActionKind::Paused,
        ActionKind::MediaDeleted,
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

/// The dashboard's enforcement panel has a line for every action the code writes, so a new
/// one (`paused`) is seen the day it is first written.
#[test]
fn the_dashboard_shows_every_enforcement_action() {
    let text = template_text();
    for action in values("Action") {
        let line = format!(r#"["${{Namespace}}", "Enforcements", "Action", "{action}"]"#);
        assert!(text.contains(&line), "the dashboard has no {line}");
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

/// A parameter's default, as a string.
fn default_of(template: &Value, parameter: &str) -> String {
    match &template["Parameters"][parameter]["Default"] {
        Value::String(text) => text.clone(),
        Value::Null => panic!("{parameter} has no default"),
        other => other.to_string(),
    }
}

#[test]
fn the_ledger_is_one_table_keyed_by_sid_on_demand_expiring_recoverable_and_kept() {
    let template = template_json();
    let resources = &template["Resources"];
    let table = &resources["LedgerTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    let table = &table["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["KeySchema"],
        json!([{"AttributeName": "sid", "KeyType": "HASH"}])
    );
    assert_eq!(
        table["AttributeDefinitions"],
        json!([{"AttributeName": "sid", "AttributeType": "S"}])
    );
    assert_eq!(
        table["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"],
        json!({"PointInTimeRecoveryEnabled": true})
    );
    assert_eq!(table["SSESpecification"]["SSEEnabled"], true);
    for none in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
        assert!(table.get(none).is_none(), "the ledger has no {none}");
    }
    // The sweep's log outlives the stack as the decision log does.
    assert_eq!(resources["SweepLog"]["DeletionPolicy"], "Retain");
    assert_eq!(resources["SweepLog"]["UpdateReplacePolicy"], "Retain");
    assert_eq!(
        resources["SweepLog"]["Properties"]["RetentionInDays"],
        resources["DecisionLog"]["Properties"]["RetentionInDays"]
    );

    assert_eq!(default_of(&template, "LedgerRetentionDays"), "400");
    for function in ["DecisionFunction", "SweepFunction"] {
        let variables = &resources[function]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            variables["LEDGER_TABLE"],
            json!({"Ref": "LedgerTable"}),
            "{function}"
        );
        assert_eq!(
            variables["LEDGER_RETENTION_DAYS"],
            json!({"Ref": "LedgerRetentionDays"}),
            "{function}"
        );
    }
    assert_eq!(
        template["Outputs"]["LedgerTable"]["Value"],
        json!({"Ref": "LedgerTable"})
    );
    assert_eq!(
        template["Outputs"]["SweepFunction"]["Value"],
        json!({"Ref": "SweepFunction"})
    );
}

#[test]
fn both_functions_read_and_write_the_ledger_item_by_item_and_nothing_else_in_dynamodb() {
    let template = template_json();
    let decision = statements(&template, "DecisionFunction");
    let sweep = statements(&template, "SweepFunction");
    // The sweep reads the rules and tokens at start as the callback does: the same grants.
    assert_eq!(sweep, decision);
    for (function, statements) in [("DecisionFunction", decision), ("SweepFunction", sweep)] {
        let ledger: Vec<&Value> = statements
            .into_iter()
            .filter(|s| s.to_string().contains("dynamodb:"))
            .collect();
        assert_eq!(ledger.len(), 1, "{function}: one statement for the ledger");
        let mut actions: Vec<&str> = ledger[0]["Action"]
            .as_array()
            .expect("a list of actions")
            .iter()
            .map(|a| a.as_str().expect("an action"))
            .collect();
        actions.sort_unstable();
        assert_eq!(
            actions,
            [
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem"
            ],
            "{function}"
        );
        assert_eq!(ledger[0]["Effect"], "Allow");
        // The table itself: it has no indexes, so no index ARN either.
        assert_eq!(
            ledger[0]["Resource"],
            json!({"Fn::GetAtt": ["LedgerTable", "Arn"]}),
            "{function}"
        );
        assert!(ledger[0].get("Condition").is_none());
    }
}

#[test]
fn the_sweep_is_the_same_build_on_a_schedule_with_the_callbacks_environment() {
    let template = template_json();
    let resources = &template["Resources"];
    let decision = &resources["DecisionFunction"];
    let sweep = &resources["SweepFunction"];
    assert_eq!(
        sweep["Metadata"], decision["Metadata"],
        "built the same way"
    );
    for same in [
        "CodeUri",
        "Handler",
        "Runtime",
        "Architectures",
        "Environment",
    ] {
        assert_eq!(
            sweep["Properties"][same], decision["Properties"][same],
            "{same}"
        );
    }
    let sweep = &sweep["Properties"];
    assert_eq!(
        sweep["ReservedConcurrentExecutions"], 1,
        "one sweep at a time"
    );
    assert_eq!(
        sweep["LoggingConfig"]["LogGroup"],
        json!({"Ref": "SweepLog"})
    );
    // A failed sweep is not retried: the next one comes at the next tick.
    assert_eq!(sweep["EventInvokeConfig"]["MaximumRetryAttempts"], 0);
    let timeout = sweep["Timeout"].as_u64().expect("a timeout");
    assert!((60..=900).contains(&timeout), "{timeout}");
    // The dashboard's line for the sweep's timeout is that timeout.
    assert!(
        template_text().contains(&format!(
            r#"{{"label": "Timeout", "value": {}}}"#,
            timeout * 1000
        )),
        "the sweep's duration panel marks its timeout"
    );

    let events = sweep["Events"].as_object().expect("events");
    assert_eq!(events.len(), 1, "the schedule, and no route");
    let schedule = events.values().next().expect("the schedule");
    assert!(
        ["ScheduleV2", "Schedule"].contains(&schedule["Type"].as_str().unwrap_or_default()),
        "{schedule}"
    );
    let schedule = &schedule["Properties"];
    assert_eq!(
        schedule["ScheduleExpression"],
        json!({"Ref": "SweepSchedule"})
    );
    assert_eq!(default_of(&template, "SweepSchedule"), "rate(15 minutes)");
    assert_eq!(
        schedule["State"],
        json!({"Fn::If": ["SweepOn", "ENABLED", "DISABLED"]})
    );
    assert_eq!(schedule["RetryPolicy"]["MaximumRetryAttempts"], 0);

    // The input is the sweep event once the window is put in, with --fix.
    let input = schedule["Input"]["Fn::Sub"]
        .as_str()
        .expect("the input names the window");
    let window = default_of(&template, "SweepWindow");
    assert_eq!(window, "48h");
    let event = lambda::SweepEvent::read(&input.replace("${SweepWindow}", &window))
        .unwrap_or_else(|| panic!("{input} is not the sweep event"));
    assert_eq!(event.reconcile.since, "48h");
    assert!(event.reconcile.fix);

    // What the window parameter allows is what reconcile --since takes, up to 31 days.
    let pattern = template["Parameters"]["SweepWindow"]["AllowedPattern"]
        .as_str()
        .expect("a pattern");
    let pattern = regex::Regex::new(pattern).expect("the pattern is a regex");
    for since in ["48h", "90m", "7d", "31d", "744h"] {
        assert!(pattern.is_match(since), "{since}");
        Window::from_options(Some(since), None, None, 1_800_000_000)
            .unwrap_or_else(|e| panic!("{since}: {e}"));
    }
    for since in ["", "0h", "48", "2w", "48 h", "1.5d", "-1d"] {
        assert!(!pattern.is_match(since), "{since}");
    }
}

#[test]
fn the_stack_alarms_on_a_sweeps_violations_an_incomplete_or_failed_sweep_and_ledger_failures() {
    let template = template_json();
    let resources = &template["Resources"];
    let ours = json!({"Fn::Sub": "ConditionalRecording/${AWS::StackName}"});
    let topic =
        json!([{"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}]);
    // (alarm, namespace, metric, dimensions, statistic, firing when)
    let cases = [
        (
            "SweepViolationsAlarm",
            ours.clone(),
            "ReconciledRecordings",
            json!([{"Name": "Outcome", "Value": "violation"}]),
            "Maximum",
            ("GreaterThanThreshold", 0),
        ),
        (
            "SweepIncompleteAlarm",
            ours.clone(),
            "IncompleteSweeps",
            Value::Null,
            "Maximum",
            ("GreaterThanThreshold", 0),
        ),
        (
            "SweepErrorsAlarm",
            json!("AWS/Lambda"),
            "Errors",
            json!([{"Name": "FunctionName", "Value": {"Ref": "SweepFunction"}}]),
            "Sum",
            ("GreaterThanOrEqualToThreshold", 1),
        ),
        (
            "LedgerFailuresAlarm",
            ours.clone(),
            "LedgerFailures",
            Value::Null,
            "Sum",
            ("GreaterThanOrEqualToThreshold", 1),
        ),
    ];
    for (alarm, namespace, metric, dimensions, statistic, (comparison, threshold)) in cases {
        assert_eq!(
            resources[alarm]["Type"], "AWS::CloudWatch::Alarm",
            "{alarm}"
        );
        let alarm_props = &resources[alarm]["Properties"];
        assert_eq!(alarm_props["Namespace"], namespace, "{alarm}");
        assert_eq!(alarm_props["MetricName"], metric, "{alarm}");
        assert_eq!(alarm_props["Dimensions"], dimensions, "{alarm}");
        assert_eq!(alarm_props["Statistic"], statistic, "{alarm}");
        assert_eq!(alarm_props["ComparisonOperator"], comparison, "{alarm}");
        assert_eq!(alarm_props["Threshold"], threshold, "{alarm}");
        assert_eq!(alarm_props["EvaluationPeriods"], 1, "{alarm}");
        assert_eq!(alarm_props["AlarmActions"], topic, "{alarm}");
        assert_eq!(alarm_props["OKActions"], topic, "{alarm}");
    }
    // A sweep alarm keeps what the last sweep said through a period without one; a ledger
    // failure is an event: no failures, no alarm.
    let sweep_period = resources["SweepViolationsAlarm"]["Properties"]["Period"].clone();
    for alarm in [
        "SweepViolationsAlarm",
        "SweepIncompleteAlarm",
        "SweepErrorsAlarm",
    ] {
        let alarm_props = &resources[alarm]["Properties"];
        assert_eq!(alarm_props["TreatMissingData"], "ignore", "{alarm}");
        assert_eq!(alarm_props["Period"], sweep_period, "{alarm}");
    }
    assert_eq!(sweep_period, 900, "one sweep at SweepSchedule's default");
    let ledger = &resources["LedgerFailuresAlarm"]["Properties"];
    assert_eq!(ledger["Period"], 300);
    assert_eq!(ledger["TreatMissingData"], "notBreaching");
}

#[test]
fn the_dashboard_shows_every_reconciled_outcome_incomplete_sweeps_and_ledger_failures() {
    let text = template_text();
    for outcome in reconcile::Outcome::ALL.map(reconcile::Outcome::as_str) {
        let line = format!(r#"["${{Namespace}}", "ReconciledRecordings", "Outcome", "{outcome}"]"#);
        assert!(text.contains(&line), "the dashboard has no {line}");
    }
    for metric in ["IncompleteSweeps", "LedgerFailures"] {
        let line = format!(r#"["${{Namespace}}", "{metric}""#);
        assert!(text.contains(&line), "the dashboard has no {metric}");
    }
}

#[test]
fn the_ledger_table_script_creates_the_templates_table_in_moto() {
    let moto = Moto::start();
    let created = moto::create_ledger_table(&moto.endpoint(), "cr-ledger");
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{said}");
    assert!(created.stdout.is_empty() && said.is_empty(), "{said}");

    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(moto.endpoint())
        .http_client(SdkClient::new().expect("TLS settings"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let (table, ttl) = moto::runtime().block_on(async {
        let table = client
            .describe_table()
            .table_name("cr-ledger")
            .send()
            .await
            .expect("the table exists");
        let ttl = client
            .describe_time_to_live()
            .table_name("cr-ledger")
            .send()
            .await
            .expect("its TTL");
        (table, ttl)
    });
    let table = table.table.expect("a description");
    let keys: Vec<(&str, &str)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    let attributes: Vec<(&str, &str)> = table
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
        .collect();
    let billing = table
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map(|b| b.as_str());
    // What template.yaml says, as the stack creates it.
    let template = template_json();
    let defined = &template["Resources"]["LedgerTable"]["Properties"];
    let pairs = |list: &'static str, name: &str, kind: &str| -> Vec<(&str, &str)> {
        defined[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .map(|e| {
                (
                    e[name].as_str().unwrap_or("?"),
                    e[kind].as_str().unwrap_or("?"),
                )
            })
            .collect()
    };
    assert_eq!(keys, pairs("KeySchema", "AttributeName", "KeyType"));
    assert_eq!(
        attributes,
        pairs("AttributeDefinitions", "AttributeName", "AttributeType")
    );
    assert_eq!(billing, defined["BillingMode"].as_str());
    let ttl = ttl.time_to_live_description.expect("a TTL description");
    assert_eq!(
        ttl.attribute_name(),
        defined["TimeToLiveSpecification"]["AttributeName"].as_str()
    );
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    // A second time, the table exists: one line, exit 1.
    let again = moto::create_ledger_table(&moto.endpoint(), "cr-ledger");
    let said = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{said}");
    assert!(
        said.starts_with("create-ledger-table: could not create cr-ledger at ")
            && said.lines().count() == 1,
        "{said}"
    );
}

#[test]
fn the_sweeps_schedule_sends_events_sweep_json_with_the_default_window() {
    let template = template_json();
    let input = &template["Resources"]["SweepFunction"]["Properties"]["Events"]["Sweep"]["Properties"]
        ["Input"]["Fn::Sub"];
    let window = template["Parameters"]["SweepWindow"]["Default"]
        .as_str()
        .expect("a default window");
    let sent = input
        .as_str()
        .expect("the Input is one !Sub string")
        .replace("${SweepWindow}", window);
    let sent: Value = serde_json::from_str(&sent).expect("the Input is JSON");
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("events/sweep.json")).expect("events/sweep.json"),
    )
    .expect("JSON");
    assert_eq!(sent, example);
    // And it is the event the binary reads as a sweep.
    let read =
        conditional_recording::lambda::SweepEvent::read(&sent.to_string()).expect("a sweep event");
    assert!(read.reconcile.fix);
}

#[test]
fn recording_media_may_be_deleted_in_the_named_bucket_alone_and_nowhere_without_one() {
    let template = template_json();
    assert_eq!(
        template["Conditions"]["HasRecordingsBucket"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "RecordingsBucketName"}, ""]}]})
    );
    assert_eq!(
        template["Parameters"]["RecordingsBucketName"]["Default"],
        ""
    );
    let bucket = json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${RecordingsBucketName}"});
    let objects = json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${RecordingsBucketName}/*"});
    for function in ["DecisionFunction", "SweepFunction"] {
        let variables = &template["Resources"][function]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            variables["RECORDINGS_BUCKETS"],
            json!({"Ref": "RecordingsBucketName"}),
            "{function}"
        );
        let granted: Vec<&Value> = statements(&template, function)
            .into_iter()
            .filter(|s| s.to_string().contains("s3:"))
            .collect();
        let grants: Vec<(Value, Value)> = granted
            .iter()
            .map(|s| (s["Action"].clone(), s["Resource"].clone()))
            .collect();
        assert_eq!(
            grants,
            [
                (json!("s3:ListBucketVersions"), bucket.clone()),
                (
                    json!(["s3:DeleteObject", "s3:DeleteObjectVersion"]),
                    objects.clone()
                ),
            ],
            "{function}: listing versions on the bucket, deleting its objects; nothing else"
        );
        for statement in &granted {
            assert_eq!(statement["Effect"], "Allow");
            assert!(statement.get("Condition").is_none());
        }
    }
    // Each grant exists only with a bucket named: an empty parameter grants nothing.
    let policy = &template["Resources"]["FunctionPolicy"]["Properties"]["PolicyDocument"];
    let conditional: Vec<&Value> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s.to_string().contains("s3:"))
        .collect();
    assert_eq!(conditional.len(), 2);
    for statement in conditional {
        let branches = statement["Fn::If"].as_array().expect("under a condition");
        assert_eq!(branches[0], "HasRecordingsBucket");
        assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}));
    }
}
