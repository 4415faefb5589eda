#!/usr/bin/env python3
"""Creates the ledger table on a DynamoDB endpoint from template.yaml's own definition.

    create-ledger-table.py --endpoint URL --table NAME [--template PATH]

Reads the LedgerTable resource of the template (template.yaml beside this script's
directory unless --template says otherwise) with cfn-lint's reader, as
check-template-metrics.py does, and creates a table of that name with its KeySchema,
AttributeDefinitions and BillingMode, then turns on its TimeToLiveSpecification. Meant for a
local emulator (moto_server): region us-east-1, dummy credentials. Prints nothing on success;
one line and exit 1 on failure (a table of that name already exists, the endpoint does not
answer, the template has no such table); exit 2 for a usage error.

Runs with the test virtualenv's Python (.venv/bin/python: cfn-lint, and boto3 from moto).
"""
import argparse
import os
import sys

PROGRAM = "create-ledger-table"
RESOURCE = "LedgerTable"


def fail(message):
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    return 1


def literal(value, where):
    """The value when it holds no CloudFormation function (a !Ref cannot be resolved here)."""
    if isinstance(value, dict):
        if any(key == "Ref" or key.startswith("Fn::") for key in value):
            raise ValueError(f"{where} is {value}, not a literal value")
        return {key: literal(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [literal(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def definition(template_path):
    """(create_table arguments without the name, TTL specification or None)."""
    from cfnlint.decode import decode

    if not os.path.isfile(template_path):
        raise ValueError(f"{template_path}: no such file")
    template, problems = decode(template_path)
    if problems:
        raise ValueError(f"{template_path} cannot be read: {problems[0]}")
    resource = template.get("Resources", {}).get(RESOURCE)
    if not resource or resource.get("Type") != "AWS::DynamoDB::Table":
        raise ValueError(f"{template_path} has no {RESOURCE} of type AWS::DynamoDB::Table")
    props = resource.get("Properties", {})
    table = {}
    for key in ("KeySchema", "AttributeDefinitions", "BillingMode"):
        if key not in props:
            raise ValueError(f"{RESOURCE} in {template_path} has no {key}")
        table[key] = literal(props[key], f"{RESOURCE}.{key}")
    ttl = props.get("TimeToLiveSpecification")
    if ttl is not None:
        ttl = literal(ttl, f"{RESOURCE}.TimeToLiveSpecification")
    return table, ttl


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="DynamoDB endpoint URL")
    parser.add_argument("--table", required=True, help="name of the table to create")
    parser.add_argument(
        "--template",
        default=os.path.join(here, "..", "template.yaml"),
        help="the SAM template (default: the repository's template.yaml)",
    )
    args = parser.parse_args()

    try:
        table, ttl = definition(args.template)
    except (OSError, ValueError) as error:
        return fail(str(error))

    import boto3
    import botocore.config
    import botocore.exceptions

    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(
            retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30
        ),
    )
    try:
        client.create_table(TableName=args.table, **table)
        client.get_waiter("table_exists").wait(
            TableName=args.table, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(TableName=args.table, TimeToLiveSpecification=ttl)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return fail(f"could not create {args.table} at {args.endpoint}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
