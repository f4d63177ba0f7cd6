#!/usr/bin/env bash
# Fetches S3Proxy (org.gaul:s3proxy, Apache-2.0) from Maven Central into .state/jars/s3proxy: the durable S3 store.
# One self-contained jar (its jar-with-dependencies artifact), cached in ~/.m2; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
VERSION=${S3PROXY_VERSION:-4.1.0}
dest="$STATE/jars/s3proxy"
jar="$dest/s3proxy-$VERSION-jar-with-dependencies.jar"
[ -f "$jar" ] && exit 0
command -v mvn >/dev/null || { echo "[setup] mvn not found: apt-get install -y maven openjdk-17-jdk-headless"; exit 1; }
echo "[setup] fetching S3Proxy $VERSION from Maven Central"
mkdir -p "$dest"
if ! out=$(mvn -q -B -Dstyle.color=never dependency:copy \
  -Dartifact="org.gaul:s3proxy:$VERSION:jar:jar-with-dependencies" -DoutputDirectory="$dest" 2>&1); then
  echo "$out"; echo "[setup] fetching S3Proxy failed (see above)"; exit 1
fi
# Older versions left behind by an upgrade are removed so the service finds exactly one jar.
find "$dest" -name 's3proxy-*.jar' ! -name "$(basename "$jar")" -delete
