#!/usr/bin/env bash
# Puts Kafka's and Kafka Connect's runtime jars (Maven Central, via services/kafka/pom.xml) into .state/jars/kafka and
# builds the project's S3 sink plugin (services/s3_sink) into .state/jars/connect-plugins/s3-sink.
# Idempotent: each part is redone only when its pom or sources changed; Maven caches downloads in ~/.m2.
# Called by scripts/setup.sh. Needs a JDK 17+ and Maven (installed from Debian when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
mkdir -p "$STATE/jars" "$STATE/logs"
STATE=$(cd "$STATE" && pwd)
log() { printf '[kafka] %s\n' "$*"; }
build_log="$STATE/logs/kafka-fetch.log"

if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
  log "installing a JDK and Maven from Debian"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    openjdk-17-jdk-headless maven >/dev/null
fi

mvn_quiet() {
  if ! mvn -B --no-transfer-progress "$@" >>"$build_log" 2>&1; then
    tail -40 "$build_log"
    log "mvn $* failed; full output in $build_log"
    exit 1
  fi
}

jars="$STATE/jars/kafka"
if [ ! -f "$jars/.complete" ] || [ services/kafka/pom.xml -nt "$jars/.complete" ]; then
  log "fetching Kafka and Kafka Connect jars into $jars (about 55 MB on the first run)"
  rm -rf "$jars"
  mvn_quiet -f services/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$jars"
  touch "$jars/.complete"
fi

plugin="$STATE/jars/connect-plugins/s3-sink"
if [ ! -f "$plugin/.complete" ] || [ -n "$(find services/s3_sink/pom.xml services/s3_sink/src -newer "$plugin/.complete" | head -1)" ]; then
  log "building the S3 sink plugin into $plugin"
  rm -rf "$plugin"
  build="$STATE/build/s3_sink"
  mvn_quiet -f services/s3_sink/pom.xml -Dsink.build.dir="$build" package -DskipTests
  mvn_quiet -f services/s3_sink/pom.xml -Dsink.build.dir="$build" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$plugin"
  cp "$build"/s3-sink-*.jar "$plugin/"
  touch "$plugin/.complete"
fi
log "jars ready"
