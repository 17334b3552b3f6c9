#!/usr/bin/env bash
# The function binaries (five, with the dispatcher), checked as Lambda runs them: each built with the test build's own
# profile (so the test run's compiled dependencies are reused; the release/arm64 build is
# `scripts/sam.sh build`), then run as the function's bootstrap against cargo-lambda's Lambda
# runtime emulator (`cargo lambda watch --only-lambda-apis`) with
# its AWS endpoints on the local emulators, and invoked with a real event:
#   poll-threats   a schedule event        -> polls the simulator, publishes to the receiver
#   sync-assets    a schedule event        -> creates customers, sites and assets
#   token-expiry   a schedule event        -> reports the token's days left
#   dispatch       a schedule event        -> one message per enabled tenant on the poll queue (moto)
#   poll-threats   that message as Lambda's SQS event (plus a malformed one) -> the tenant is
#                    run, and only the malformed message is named to be received again
#   dispatch       {"job": "assets"} and {"job": "tokens"} -> a message on each job's queue
#   sync-assets,   that message as Lambda's SQS event -> the tenant is synced (customers, sites
#   token-expiry     and assets) and its token checked (the alert sent), nothing received again
#   status-writeback Function URL requests -> the same 401 for an unknown tenant and for an
#                    unsigned webhook, and a signed status change applied to the simulator's
#                    threats (202)
# Sourced by scripts/test.sh after emulators_start (it needs DynamoDB Local and moto up).

lambda_check() {
  local venv="$TOOLS/venv-lambda" work sim_port hook_port table secret_name hook_secret inbound_secret queue_url assets_url tokens_url
  local out_dir="${CARGO_TARGET_DIR:-target}"
  if [ ! -x "$venv/bin/cargo-lambda" ]; then
    echo "installing cargo-lambda==1.9.2 (brings zig)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'cargo-lambda==1.9.2'
  fi
  # One build of every binary in the workspace, with the same package set and profile as
  # `cargo test --workspace`, so nothing already compiled for the tests is compiled again.
  cargo build -q --locked --workspace --bins || return 1
  work=$(mktemp -d)
  sim_port=$(free_port); hook_port=$(free_port)
  hook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"   # test-only: opens the local receiver
  inbound_secret="whsec_dGhpcy1pcy1hLXRlc3Qtb25seS1pbmJvdW5kLWtleQ=="   # test-only: signs our webhooks
  "$out_dir"/debug/s1-bridge-sim --listen "127.0.0.1:$sim_port" --threats 50 --agents 20 --cloud-alerts 0 --token-days 5 \
    --receiver "127.0.0.1:$hook_port" --receiver-secret "$hook_secret" > "$work/sim.log" 2>&1 &
  local sim_pid=$!
  EMU_PIDS+=("$sim_pid")
  wait_http "http://127.0.0.1:$sim_port/web/api/v2.1/system/status" simulator "$sim_pid" "$work/sim.log"

  # A tenant whose token and webhook secret live in Secrets Manager (moto), on a fresh table.
  table="lambda-check-$RANDOM$RANDOM"
  secret_name="s1-bridge/lambda-check/$RANDOM$RANDOM"
  "$TOOLS/venv/bin/python" - "$secret_name" "$hook_secret" "$inbound_secret" <<'PY'
import os, sys, boto3
sm = boto3.client("secretsmanager", endpoint_url=os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"])
sm.create_secret(Name=sys.argv[1] + "/s1", SecretString="sim-tenant-token")
sm.create_secret(Name=sys.argv[1] + "/hook", SecretString=sys.argv[2])
sm.create_secret(Name=sys.argv[1] + "/inbound", SecretString=sys.argv[3])
PY
  cat > "$work/tenant.json" <<JSON
{ "id": "lambda", "enabled": true, "console_url": "http://127.0.0.1:$sim_port",
  "token": { "kind": "secrets_manager", "secret_id": "$secret_name/s1" },
  "platform": { "kind": "generic", "settings": {
      "url": "http://127.0.0.1:$hook_port/hooks/s1",
      "secret": { "kind": "secrets_manager", "secret_id": "$secret_name/hook" },
      "inbound_secrets": [ { "kind": "secrets_manager", "secret_id": "$secret_name/inbound" } ] } } }
JSON
  new_queue() { "$TOOLS/venv/bin/python" -c "import os, sys, boto3; print(boto3.client('sqs', endpoint_url=os.environ['AWS_ENDPOINT_URL']).create_queue(QueueName=sys.argv[1])['QueueUrl'])" "$1"; }
  queue_url=$(new_queue "$table-poll") || return 1
  assets_url=$(new_queue "$table-assets") || return 1
  tokens_url=$(new_queue "$table-tokens") || return 1
  "$out_dir"/debug/s1-bridge init --store "dynamodb:$table" || return 1
  "$out_dir"/debug/s1-bridge tenant add --file "$work/tenant.json" --allow-host 127.0.0.1 --store "dynamodb:$table" || return 1

  invoke() { # function event-file -> prints the response
    local fn=$1 event=$2 port log rt_pid boot_pid out
    port=$(free_port)
    log="$work/$fn.log"
    PATH="$venv/bin:$PATH" cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port" > "$log.watch" 2>&1 &
    rt_pid=$!
    # The emulator answers only its Lambda API paths: wait for the port itself.
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 \
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 TABLE_NAME="$table" POLL_QUEUE_URL="$queue_url" \
      ASSETS_QUEUE_URL="$assets_url" TOKENS_QUEUE_URL="$tokens_url" DISPATCH_SPREAD_SECONDS=1 S1_BRIDGE_ALLOWED_HOSTS=127.0.0.1 "$out_dir"/debug/"$fn" > "$log" 2>&1 &
    boot_pid=$!
    out=$(curl -s --max-time 120 -X POST "http://127.0.0.1:$port/2015-03-31/functions/_/invocations" -H 'content-type: application/json' --data-binary @"$event")
    kill "$boot_pid" "$rt_pid" 2>/dev/null; wait "$boot_pid" "$rt_pid" 2>/dev/null
    printf '%s' "$out"
  }
  sqs_event() { # queue-url event-file [malformed]: the queue's one message as Lambda's SQS event
    "$TOOLS/venv/bin/python" - "$@" <<'PY'
import json, os, sys, boto3
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
msgs = []
for _ in range(10):  # the dispatcher's delay is under DISPATCH_SPREAD_SECONDS=1
    msgs = sqs.receive_message(QueueUrl=sys.argv[1], MaxNumberOfMessages=10, WaitTimeSeconds=1,
                               AttributeNames=["All"]).get("Messages", [])
    if msgs:
        break
assert len(msgs) == 1 and json.loads(msgs[0]["Body"]) == {"tenant": "lambda"}, msgs
def record(mid, body, attrs):
    return {"messageId": mid, "receiptHandle": "rh-" + mid, "body": body, "attributes": attrs,
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
records = [record(msgs[0]["MessageId"], msgs[0]["Body"], msgs[0]["Attributes"])]
if sys.argv[3:] == ["malformed"]:
    records.append(record("malformed-1", "poll everyone", {"ApproximateReceiveCount": "1"}))
json.dump({"Records": records}, open(sys.argv[2], "w"))
PY
  }
  check() { # description, response, python expression over `r` (further arguments: sys.argv[2:])
    if "$TOOLS/venv/bin/python" -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if ($3) else 1)" "$2" "${@:4}"; then
      echo "ok   $1"
    else
      echo "FAIL $1: $2"; return 1
    fi
  }

  echo '{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}' > "$work/schedule.json"
  local r
  r=$(invoke poll-threats "$work/schedule.json")
  check "poll-threats bootstrap polls the simulator into the receiver" "$r" "r['tenants'][0]['published'] == 50" || return 1
  r=$(invoke dispatch "$work/schedule.json")
  check "dispatch bootstrap sends one poll message per enabled tenant" "$r" "r['tenants'] == 1 and r['sent'] == 1 and r['not_sent'] == []" || return 1
  # The message as the event source mapping hands it to poll-threats, with a malformed one.
  sqs_event "$queue_url" "$work/sqs.json" malformed || return 1
  r=$(invoke poll-threats "$work/sqs.json")
  check "poll-threats bootstrap runs the queued tenant and names only the malformed message" "$r" \
    "r == {'batchItemFailures': [{'itemIdentifier': 'malformed-1'}]}" || return 1
  # The asset sync and the token watch from their own queues (a week's window: due at once).
  for job in assets tokens; do
    echo "{\"job\": \"$job\", \"every_minutes\": 10080}" > "$work/dispatch-$job.json"
    r=$(invoke dispatch "$work/dispatch-$job.json")
    check "dispatch bootstrap sends the $job job's message" "$r" "r['sent'] == 1 and r['not_sent'] == []" || return 1
  done
  sqs_event "$assets_url" "$work/sqs-assets.json" || return 1
  r=$(invoke sync-assets "$work/sqs-assets.json")
  check "sync-assets bootstrap syncs the queued tenant" "$r" "r == {'batchItemFailures': []}" || return 1
  r=$(invoke sync-assets "$work/schedule.json")
  check "sync-assets bootstrap finds the queued sync's customers, sites and assets in place" "$r" \
    "r[0]['created'] == 0 and r[0]['unchanged'] > 0 and r[0]['error'] is None" || return 1
  sqs_event "$tokens_url" "$work/sqs-tokens.json" || return 1
  r=$(invoke token-expiry "$work/sqs-tokens.json")
  check "token-expiry bootstrap checks the queued tenant's token" "$r" "r == {'batchItemFailures': []}" || return 1
  r=$(invoke token-expiry "$work/schedule.json")
  check "token-expiry bootstrap reports the token's days left, already alerted by the queued check" "$r" \
    "r[0]['days_left'] == 4 and r[0]['alerted'] is None" || return 1
  cat > "$work/url-unknown.json" <<'JSON'
{"version":"2.0","routeKey":"$default","rawPath":"/generic/nobody","rawQueryString":"","headers":{"content-type":"application/json"},
 "requestContext":{"http":{"method":"POST","path":"/generic/nobody","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"test"},
 "domainName":"x.lambda-url.us-east-1.on.aws","requestId":"r1","routeKey":"$default","stage":"$default","time":"27/Nov/2026:00:00:00 +0000","timeEpoch":0,"accountId":"anonymous","apiId":"x"},
 "body":"{}","isBase64Encoded":false}
JSON
  sed 's#/generic/nobody#/generic/lambda#g' "$work/url-unknown.json" > "$work/url-unsigned.json"
  local unknown
  unknown=$(invoke status-writeback "$work/url-unknown.json")
  check "status-writeback bootstrap answers 401 for an unknown tenant" "$unknown" "r['statusCode'] == 401" || return 1
  r=$(invoke status-writeback "$work/url-unsigned.json")
  check "status-writeback bootstrap refuses an unsigned webhook with the same 401" "$r" \
    "r['statusCode'] == 401 and r['body'] == json.loads(sys.argv[2])['body']" "$unknown" || return 1
  # A signed status change for a story the poll stored: applied to S1 by the bootstrap.
  local threat
  threat=$("$TOOLS/venv/bin/python" - "$table" "$inbound_secret" "$work/url-signed.json" <<'PY'
import base64, hashlib, hmac, json, os, sys, time, boto3
table, secret, out = sys.argv[1:4]
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
items = ddb.query(TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                  ExpressionAttributeValues={":p": {"S": "TENANT#lambda"}, ":s": {"S": "STORY#"}})["Items"]
# A story with a threat not yet resolved, so the check below cannot pass by itself.
story, threat = next((st, tid) for st in (json.loads(i["data"]["S"]) for i in items)
                     for tid, m in sorted(st["members"].items()) if m.get("status") != "resolved")
body = json.dumps({"type": "alert.status_changed", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "data": {"alert_key": "s1:127.0.0.1:" + story["id"], "status": "closed",
                            "close_reason": "false positive", "actor": {"name": "Lambda check"}}})
wid, ts = "msg_lambda_check_1", str(int(time.time()))
key = base64.b64decode(secret.removeprefix("whsec_"))
sig = "v1," + base64.b64encode(hmac.new(key, f"{wid}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
headers = {"content-type": "application/json", "webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": sig}
http = {"method": "POST", "path": "/generic/lambda", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/generic/lambda", "rawQueryString": "", "headers": headers,
         "requestContext": {"http": http, "domainName": "x.lambda-url.us-east-1.on.aws", "requestId": "r2",
                            "routeKey": "$default", "stage": "$default", "time": "27/Nov/2026:00:00:00 +0000",
                            "timeEpoch": 0, "accountId": "anonymous", "apiId": "x"},
         "body": body, "isBase64Encoded": False}
json.dump(event, open(out, "w"))
print(threat)
PY
) || return 1
  r=$(invoke status-writeback "$work/url-signed.json")
  check "status-writeback bootstrap applies a signed status change (202)" "$r" "r['statusCode'] == 202 and json.loads(r['body'])['writeback'] == 'applied'" || return 1
  r=$(curl -s "http://127.0.0.1:$sim_port/_sim/threats/$threat")
  check "the change reached S1 (threat $threat resolved, false positive)" "$r" "r['threatInfo']['incidentStatus'] == 'resolved' and r['threatInfo']['analystVerdict'] == 'false_positive'" || return 1
  local stats
  stats=$(curl -s "http://127.0.0.1:$hook_port/hooks/stats")
  check "the receiver verified every signature" "$stats" "r['refused_signatures'] == 0 and r['unique'] >= 50" || return 1
  rm -rf "$work"
}
