#!/usr/bin/env bash
# Installs (from the npm registry, pinned by emulators/package-lock.json) and starts the local AWS
# emulators the integration tests use, on 127.0.0.1:
#   dynalite       DynamoDB                                   KCLRS_TEST_DYNAMODB      :4568
#   kinesalite     Kinesis, fast (no UpdateShardCount / EFO)  KCLRS_TEST_KINESIS       :4567
#   kinesis-local  Kinesis, complete but slow (EFO, ChildShards) KCLRS_TEST_KINESIS_FULL :4569
#                  the same over TLS, HTTP/2 by ALPN              KCLRS_TEST_KINESIS_TLS   :4570
#                  its self-signed certificate (PEM)              KCLRS_TEST_KINESIS_TLS_CERT
#   moto           DynamoDB with point-in-time recovery and   KCLRS_TEST_DYNAMODB_FULL :4571
#                  deletion protection (dynalite has neither; from PyPI, pinned by
#                  emulators/requirements.txt)
#
#   eval "$(.ci/emulators.sh start)"   # prints the exports; servers keep running in the background
#   .ci/emulators.sh stop
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${KCLRS_EMULATOR_DIR:-$HOME/.cache/kcl-rs/emulators}"
run="$dir/run"

install() {
  mkdir -p "$dir"
  if ! cmp -s "$here/emulators/package-lock.json" "$dir/package-lock.json" || [ ! -d "$dir/node_modules" ]; then
    command -v npm >/dev/null || { echo "npm is needed for the emulators (apt install npm)" >&2; exit 1; }
    cp "$here/emulators/package.json" "$here/emulators/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  if ! cmp -s "$here/emulators/requirements.txt" "$dir/requirements.txt" || [ ! -x "$dir/venv/bin/moto_server" ]; then
    command -v python3 >/dev/null || { echo "python3 (with venv) is needed for moto (apt install python3-venv)" >&2; exit 1; }
    rm -rf "$dir/venv"
    python3 -m venv "$dir/venv" >&2
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/emulators/requirements.txt" >&2
    cp "$here/emulators/requirements.txt" "$dir/"
  fi
}

wait_port() { # name port log
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not start on 127.0.0.1:$2; its log:" >&2; cat "$3" >&2; exit 1
}

start_one() { # name port dir command...
  local name="$1" port="$2" cwd="$3"; shift 3
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken: is another $name running? ($0 stop)" >&2; exit 1
  fi
  (cd "$cwd" && exec setsid "$@") >"$run/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
  wait_port "$name" "$port" "$run/$name.log"
}

start() {
  install
  mkdir -p "$run"
  local bin="$dir/node_modules/.bin"
  start_one dynalite 4568 "$dir" "$bin/dynalite" --host 127.0.0.1 --port 4568 \
    --createTableMs 0 --deleteTableMs 0 --updateTableMs 0
  start_one kinesalite 4567 "$dir" "$bin/kinesalite" --host 127.0.0.1 --port 4567 \
    --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 1000
  # kinesis-local reads server.json from its working directory.
  start_one kinesis-local 4569 "$dir/node_modules/kinesis-local" env KINESIS_MOCK_PLAIN_PORT=4569 \
    KINESIS_MOCK_TLS_PORT=4570 CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms \
    REGISTER_STREAM_CONSUMER_DURATION=0ms MERGE_SHARDS_DURATION=0ms SPLIT_SHARD_DURATION=0ms \
    UPDATE_SHARD_COUNT_DURATION=0ms SHARD_LIMIT=1000 LOG_LEVEL=WARN node main.js
  wait_port kinesis-local-tls 4570 "$run/kinesis-local.log"
  start_one moto 4571 "$dir" "$dir/venv/bin/moto_server" -H 127.0.0.1 -p 4571
  node -e 'process.stdout.write(require(process.argv[1]).server.cert)' \
    "$dir/node_modules/kinesis-local/server.json" >"$run/kinesis-local.pem"
  echo "export KCLRS_TEST_DYNAMODB=http://127.0.0.1:4568"
  echo "export KCLRS_TEST_KINESIS=http://127.0.0.1:4567"
  echo "export KCLRS_TEST_KINESIS_FULL=http://127.0.0.1:4569"
  echo "export KCLRS_TEST_KINESIS_TLS=https://127.0.0.1:4570"
  echo "export KCLRS_TEST_KINESIS_TLS_CERT=$run/kinesis-local.pem"
  echo "export KCLRS_TEST_DYNAMODB_FULL=http://127.0.0.1:4571"
}

stop() {
  local groups=()
  for pidfile in "$run"/*.pid; do
    [ -e "$pidfile" ] || continue
    groups+=("$(cat "$pidfile")")
    rm -f "$pidfile"
  done
  [ "${#groups[@]}" -gt 0 ] || return 0
  for g in "${groups[@]}"; do kill -- "-$g" 2>/dev/null || true; done
  # kinesis-local ignores SIGTERM: what is still there after 2 s gets SIGKILL.
  for _ in $(seq 1 20); do
    local alive=0
    for g in "${groups[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
