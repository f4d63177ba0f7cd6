#!/usr/bin/env bash
# Puts Kafka's and Kafka Connect's runtime jars (Maven Central, via services/kafka/pom.xml) into .state/jars/kafka and
# builds the project's S3 sink plugin (services/s3_sink) into .state/jars/connect-plugins/s3-sink; the Connect worker's
# MSK IAM client (services/connect/pom.xml) goes to .state/jars/connect-iam.
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

# copy_jars POM DIR WHAT: the runtime dependencies of POM into DIR, again only when POM changed.
copy_jars() {
  local pom=$1 dir=$2
  if [ ! -f "$dir/.complete" ] || [ "$pom" -nt "$dir/.complete" ]; then
    log "fetching $3 into $dir"
    rm -rf "$dir"
    mvn_quiet -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir"
    touch "$dir/.complete"
  fi
}

copy_jars services/kafka/pom.xml "$STATE/jars/kafka" "Kafka and Kafka Connect jars (about 55 MB on the first run)"
copy_jars services/connect/pom.xml "$STATE/jars/connect-iam" "the Connect worker's MSK IAM client (KAFKA_AUTH=iam, 14 MB)"

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
